"""The seven HAM10000 diagnostic classes, in one fixed order used everywhere.

The order is alphabetical, as in the report's classification report and in
scikit-learn's default label order, so that column ``k`` of every probability
table means the same class in every module.
"""

CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")

CLASS_NAMES: dict[str, str] = {
    "akiec": "Actinic keratoses / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesions",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevi",
    "vasc": "Vascular lesions",
}

# Image counts per class in the full HAM10000 release (the report's Table 4.1,
# which matches the public metadata). Used for the synthetic class mix.
HAM10000_COUNTS: dict[str, int] = {
    "akiec": 327,
    "bcc": 514,
    "bkl": 1099,
    "df": 115,
    "mel": 1113,
    "nv": 6705,
    "vasc": 142,
}


def label(dx: str) -> str:
    """Readable label for figures, e.g. ``"Melanoma (mel)"``."""
    return f"{CLASS_NAMES[dx]} ({dx})"


def index(dx: str) -> int:
    """Column index of class ``dx`` in every probability table."""
    return CLASSES.index(dx)
