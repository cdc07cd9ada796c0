import sys
from pathlib import Path

# Shared hand-built graphs live beside the format tests (tests/ has no packages).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "format"))
