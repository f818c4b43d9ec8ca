"""Input pipeline: decoding, preprocessing, balancing, augmentation, order and determinism."""

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from lesionscan.core.errors import DataError, ParameterError
from lesionscan.model import pipeline

LABELS = [0, 0, 0, 0, 0, 0, 1, 1, 2, 4]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """Ten small random images, JPEG and PNG mixed, 60 x 45 like HAM10000's 4:3."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(len(LABELS)):
        path = folder / (f"img{i}.png" if i % 2 else f"img{i}.jpg")
        Image.fromarray(rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_load_image_resizes_to_uint8_rgb(image_files):
    img = pipeline.load_image(image_files[0], 32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8


def test_load_image_bad_file_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg"):
        pipeline.load_image(bad, 32)


def test_preprocess_matches_resnet50_and_leaves_input_alone():
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    before = x.copy()
    out = pipeline.preprocess(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(out[..., 0], before[..., 2] - 103.939, rtol=1e-5)  # BGR, mean-centred
    np.testing.assert_allclose(np.asarray(pipeline.preprocess(tf.constant(before))), out, rtol=1e-6)
    assert pipeline.preprocess(before.astype(np.uint8)).dtype == np.float32


def test_eval_dataset_shapes_dtypes_and_order(image_files):
    ds = pipeline.make_dataset(image_files, LABELS, 32, 4, training=False)
    assert ds.cardinality().numpy() == 3
    x, y = _collect(ds)
    assert x.shape == (10, 32, 32, 3) and x.dtype == np.float32
    assert y.shape == (10, 7) and y.dtype == np.float32
    np.testing.assert_array_equal(y.argmax(axis=1), LABELS)
    expected = pipeline.preprocess(np.stack([pipeline.load_image(p, 32) for p in image_files]))
    np.testing.assert_allclose(x, expected, atol=1e-4)  # same images, same order, no augmentation
    x2, _ = _collect(ds)
    np.testing.assert_array_equal(x, x2)  # second pass (from the cache) is identical


def test_datasets_run_without_the_tf_data_autotuner(image_files):
    """Autotuning made every epoch wait for its iterator's re-planning thread (pipeline.PARALLEL_CALLS)."""
    for training in (False, True):
        ds = pipeline.make_dataset(image_files, LABELS, 32, 4, training=training, balance_target=2)
        assert ds.options().autotune.enabled is False


def test_eval_dataset_never_augments_and_uncached_matches(image_files):
    x1, _ = _collect(pipeline.make_dataset(image_files, LABELS, 32, 3, training=False, augment=True))
    x2, _ = _collect(pipeline.make_dataset(image_files, LABELS, 32, 5, training=False, cache=False))
    np.testing.assert_array_equal(x1, x2)


def test_training_augmentation_changes_images(image_files):
    plain = pipeline.make_dataset(image_files, LABELS, 32, 10, training=True, augment=False, seed=3)
    augmented = pipeline.make_dataset(image_files, LABELS, 32, 10, training=True, augment=True, seed=3)
    assert augmented.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    xp, yp = _collect(plain)
    xa, ya = _collect(augmented)
    np.testing.assert_array_equal(yp, ya)  # same draw and order: only augmentation differs
    assert not np.allclose(xp, xa)
    reference = pipeline.preprocess(np.stack([pipeline.load_image(p, 32) for p in image_files]))
    # unaugmented training images are exactly the decoded ones, shuffled
    assert all(any(np.allclose(img, ref, atol=1e-4) for ref in reference) for img in xp)


def test_training_balances_each_epoch_and_is_seeded(image_files):
    ds = pipeline.make_dataset(image_files, LABELS, 32, 4, training=True, balance_target=5, seed=1)
    assert ds.cardinality().numpy() == 5  # 4 classes x 5 images / batch 4
    x1, y1 = _collect(ds)
    x2, y2 = _collect(ds)
    np.testing.assert_array_equal(y1.sum(axis=0), [5, 5, 5, 0, 5, 0, 0])
    assert not np.array_equal(x1, x2)  # a new draw/order/augmentation each epoch
    again = pipeline.make_dataset(image_files, LABELS, 32, 4, training=True, balance_target=5, seed=1)
    x3, y3 = _collect(again)
    np.testing.assert_array_equal(x1, x3)  # same seed: same first epoch
    np.testing.assert_array_equal(y1, y3)
    other = pipeline.make_dataset(image_files, LABELS, 32, 4, training=True, balance_target=5, seed=2)
    assert not np.array_equal(x1, _collect(other)[0])


def test_training_without_balance_uses_every_image_once(image_files):
    ds = pipeline.make_dataset(image_files, LABELS, 32, 4, training=True, augment=False, seed=0)
    _, y = _collect(ds)
    np.testing.assert_array_equal(np.sort(y.argmax(axis=1)), sorted(LABELS))


def test_make_dataset_rejects_bad_input(image_files):
    with pytest.raises(ParameterError, match="labels"):
        pipeline.make_dataset(image_files, LABELS[:-1], 32, 4, training=False)
    with pytest.raises(ParameterError, match="class indices"):
        pipeline.make_dataset(image_files[:1], [7], 32, 4, training=False)


def test_balanced_indices_counts_and_sampling():
    labels = np.array([0] * 10 + [1] * 3 + [3] * 1)
    idx = pipeline.balanced_indices(labels, 6, seed=0)
    assert np.bincount(labels[idx]).tolist() == [6, 6, 0, 6]
    big = idx[labels[idx] == 0]
    assert len(set(big)) == 6  # enough images: without replacement
    small = idx[labels[idx] == 1]
    assert sorted(np.bincount(small)[10:13]) == [2, 2, 2]  # too few: each repeated evenly
    np.testing.assert_array_equal(idx, pipeline.balanced_indices(labels, 6, seed=0))
    assert not np.array_equal(idx, pipeline.balanced_indices(labels, 6, seed=1))
    uneven = pipeline.balanced_indices(labels, 4, seed=0)
    counts = np.bincount(uneven[labels[uneven] == 1])[10:13]
    assert sorted(counts) == [1, 1, 2]
    with pytest.raises(ParameterError):
        pipeline.balanced_indices(labels, 0, seed=0)


def test_class_weights_balanced():
    weights = pipeline.class_weights([0, 0, 0, 1, 5, 5])
    assert set(weights) == {0, 1, 5}
    assert weights[0] == pytest.approx(6 / (3 * 3))
    assert weights[1] == pytest.approx(6 / (3 * 1))
    assert weights[5] == pytest.approx(6 / (3 * 2))


def test_augment_images_with_zero_factors_is_the_identity():
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    none = pipeline.augment_images(x, [0, 0], rotation=0, zoom=0, brightness=0, shear=0, flip=False)
    np.testing.assert_array_equal(np.asarray(none), x)


def test_augment_images_is_stateless_and_keeps_ranges():
    x = np.random.default_rng(1).uniform(0, 255, (6, 20, 20, 3)).astype("float32")
    a = pipeline.augment_images(x, [1, 2]).numpy()
    np.testing.assert_array_equal(a, pipeline.augment_images(x, [1, 2]).numpy())  # same seed, same output
    assert not np.allclose(a, pipeline.augment_images(x, [1, 3]).numpy())
    assert a.shape == x.shape and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 255
    traced = tf.function(pipeline.augment_images).get_concrete_function(tf.TensorSpec((None, 20, 20, 3)), [1, 2])
    assert traced.output_shapes.as_list() == [None, 20, 20, 3]  # static shape kept (models trace on it)
    # identity warp (every factor 0) reproduces the image exactly
    same = pipeline.augment_images(x, [0, 0], rotation=0, zoom=0, brightness=0, shear=0, flip=False).numpy()
    np.testing.assert_allclose(same, x, atol=1e-3)
    # flips alone: each image is itself, mirrored left-right, up-down or both; all four occur over a few draws
    seen = set()
    for key in range(6):
        flipped = pipeline.augment_images(x, [0, key], rotation=0, zoom=0, brightness=0, shear=0).numpy()
        for img, out in zip(x, flipped):
            options = {"none": img, "lr": img[:, ::-1], "ud": img[::-1], "both": img[::-1, ::-1]}
            match = [name for name, ref in options.items() if np.allclose(out, ref, atol=1e-3)]
            assert len(match) == 1
            seen.add(match[0])
    assert seen == {"none", "lr", "ud", "both"}
    # brightness alone shifts every pixel of an image by the same amount (away from the clip limits)
    mid = np.full((4, 8, 8, 3), 128.0, np.float32)
    shifted = pipeline.augment_images(mid, [5, 5], rotation=0, zoom=0, shear=0, flip=False).numpy() - 128.0
    assert np.ptp(shifted.reshape(4, -1), axis=1).max() < 1e-3
    assert np.abs(shifted).max() <= 0.15 * 255 + 1e-3 and np.abs(shifted).max() > 0


def test_augmented_copies_are_deterministic_varied_uint8():
    image = (np.arange(24 * 24 * 3) % 251).reshape(24, 24, 3).astype(np.uint8)
    copies = pipeline.augmented_copies(image, n=4, seed=5)
    assert len(copies) == 4 and all(c.shape == image.shape and c.dtype == np.uint8 for c in copies)
    assert not np.array_equal(copies[0], copies[1])  # each copy its own draw
    again = pipeline.augmented_copies(image, n=4, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(copies, again))
