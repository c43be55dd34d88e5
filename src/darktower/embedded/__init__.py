"""Real servers started on loopback for the embedded default (dev fleet) and the tests."""
