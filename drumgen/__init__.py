"""drumgen: expressive drum grooves from a style-conditioned transformer."""

__version__ = "0.1.0"
