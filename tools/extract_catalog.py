"""Copies the price catalog out of a LiteLLM wheel: extract_catalog.py WHEEL OUT."""
import glob
import pathlib
import sys
import zipfile

MEMBER = "litellm/model_prices_and_context_window_backup.json"

wheels = glob.glob(sys.argv[1])
if len(wheels) != 1:
    sys.exit(f"expected one wheel matching {sys.argv[1]}, found {wheels}")
out = pathlib.Path(sys.argv[2])
out.parent.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheels[0]) as wheel:
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(wheel.read(MEMBER))
    tmp.replace(out)
