"""One module per published format; each turns raw files into a :class:`RawDataset`."""
