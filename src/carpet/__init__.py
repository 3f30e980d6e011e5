"""carpet: PET/CT and outcome research in CAR T-cell therapy.

Imaging (SUV, lesion segmentation, MTV/TLG/Dmax, lesion site), clinical rules (IMWG, risk scores),
survival statistics matching R, and reports — one package, one ``carpet`` command.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
