"""mtadapt: adapt pretrained machine-translation models cheaply and measurably."""

__version__ = "0.1.0"
