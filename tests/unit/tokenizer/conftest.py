"""Tokenizer tests: make the sibling helpers (`tok_oracle`, `tok_strategies`) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
