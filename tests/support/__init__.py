"""What tests import to do their work, beside the fixtures in the `conftest.py` files: keys and
tokens (`keys`), bounded waits (`waiting`), metric samples (`metrics`), managed processes
(`processes`), an in-process MC's handle (`mc`), `darktower mc`/`gc` run as real processes
(`services`), `darktower` commands run in-process (`cli`) and a real Janus (`janus`). A
`conftest.py` holds fixtures only; a test module never imports from one
(tests/test_tree_rules.py)."""
