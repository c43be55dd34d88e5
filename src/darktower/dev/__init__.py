"""`darktower dev`: the local fleet in one command."""
