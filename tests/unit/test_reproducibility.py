"""The reproducibility appendix is generated from the manifest: every value on it comes from the run."""

from lesionscan.core import parameters
from lesionscan.study import reproducibility


def _manifest(profile="cpu", **changes):
    params = parameters.resolve(profile, {k: v for k, v in changes.items()})
    params["data_dir"] = "/data/ham10000"
    if profile != "smoke":
        params["data"] = "directory"
    return {
        "profile": profile, "parameters": params, "seed": params["seed"], "data_dir": params["data_dir"],
        "data_checksum": "sha256:" + "ab" * 32, "versions": {"tensorflow": "2.21.0", "python": "3.11.9"},
        "commit": "0123456789abcdef0123456789abcdef01234567", "command": "lesionscan study --profile cpu",
        "started": "2026-11-25T20:34:09+00:00", "machine": {"platform": "Linux-x", "processor": "x86_64",
                                                            "cpus": 2, "gpus": []},
        "chapters": {"01_data": {"seconds": 5.9, "status": "ok"}, "03_baseline": {"seconds": 1390.3, "status": "ok"}},
    }


def test_overrides_are_the_parameters_that_differ_from_the_profile():
    manifest = _manifest(epochs=3, augment=False)
    assert reproducibility.overrides(manifest) == {"epochs": 3, "augment": False}
    assert reproducibility.overrides(_manifest()) == {}


def test_rerun_command_repeats_profile_data_and_overrides():
    command = reproducibility.rerun_command(_manifest(epochs=3, augment=False, leakage_protocols="image"))
    assert command.startswith("lesionscan study --profile cpu --data-dir /data/ham10000")
    assert "--set epochs=3" in command and "--set augment=false" in command
    # the cpu profile already has leakage_protocols=image: not an override
    assert "leakage_protocols" not in command
    smoke = reproducibility.rerun_command(_manifest("smoke"))
    assert smoke == "lesionscan study --profile smoke"


def test_a_rerun_command_resolves_to_the_same_parameters():
    manifest = _manifest(epochs=3, attention_heads=1, label_smoothing=0.0, ablation_models="")
    words = reproducibility.rerun_command(manifest).split()
    sets = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    again = parameters.resolve("cpu", sets)
    for name, value in manifest["parameters"].items():
        if name not in ("data", "data_dir"):
            assert again[name] == value, name


def test_appendix_shows_every_recorded_fact():
    manifest = _manifest(epochs=3)
    page = reproducibility.appendix_markdown(manifest, repository="https://example.org/lesionscan")
    for fact in ("sha256:" + "ab" * 32, "0123456789abcdef0123456789abcdef01234567", "2.21.0", "1,390",
                 "03_baseline", "2 CPUs", "no GPU", "`epochs=3`", "git checkout 0123456789abcdef",
                 "git clone https://example.org/lesionscan"):
        assert fact in page, fact
    for name in manifest["parameters"]:
        assert f"`{name}`" in page, name
    assert "uncommitted" not in page


def test_appendix_warns_about_a_dirty_checkout_and_names_synthetic_data():
    manifest = _manifest("smoke")
    manifest["commit"] += "+dirty"
    page = reproducibility.appendix_markdown(manifest, repository="https://example.org/lesionscan")
    assert "uncommitted changes" in page
    assert "git checkout 0123456789abcdef0123456789abcdef01234567\n" in page  # the nearest commit, never "+dirty"
    assert "**synthetic**" in page and "not real dermoscopy" in page


def test_machine_is_described():
    info = reproducibility.machine()
    assert info["cpus"] >= 1 and isinstance(info["gpus"], list) and info["platform"]


def test_the_appendix_says_what_each_chapter_wrote_and_where_each_model_came_from():
    manifest = _manifest()
    manifest["chapters"]["03_baseline"]["wrote"] = ["figures/baseline_roc.png", "metrics/baseline.json",
                                                    "models/baseline.keras", "tables/baseline_metrics.csv"]
    manifest["models"] = {
        "baseline": {"model": "baseline", "seed": 0, "split_protocol": "seed", "source": "trained in this run",
                     "seconds": 1390.3, "cache_entry": "0123456789abcdef"},
        "soft_attention": {"model": "soft_attention", "seed": 0, "split_protocol": "seed", "seconds": 1200.0,
                           "source": "reused from the training cache", "trained_at": "2026-11-24T10:00:00+00:00",
                           "cache_entry": "fedcba9876543210"}}
    page = reproducibility.appendix_markdown(manifest)
    assert "| 03_baseline | 4 | `baseline_roc (figure)`, `baseline (metrics)`, `baseline (model)`, " \
           "`baseline_metrics (table)` |" in page
    assert "| `baseline` | baseline | 0 | seed | in this run | 1,390 | `0123456789abcdef` |" in page
    assert "reused: trained 2026-11-24T10:00:00+00:00" in page
