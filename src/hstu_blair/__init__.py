"""hstu-blair: text-enhanced generative sequential recommendation (HSTU, HSTU-BLaIR, SASRec)."""

from hstu_blair._version import __version__
from hstu_blair.data.dataset import SequenceData, load_dataset
from hstu_blair.data.prepare import PrepareOptions, prepare

__all__ = ["__version__", "PrepareOptions", "SequenceData", "load_dataset", "prepare"]
