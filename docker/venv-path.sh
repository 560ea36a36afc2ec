# Put the image's virtualenv (ray, rlp, python) first on PATH in login shells too.
export PATH="/opt/venv/bin:$PATH"
