"""The app's limits, in one place (importing this module is cheap: no torch, no Gradio)."""

#: The most images scored in one request (the page and the API): a bound on CPU time per click.
MAX_IMAGES_PER_REQUEST = 16
#: The default upload size limit per file, in MB (10^6 bytes); ``hrrkit app --max-file-mb`` changes it.
DEFAULT_MAX_FILE_MB = 25.0
#: A retrospection panel larger than this (pixels per side) is centre-cropped for display only.
PANEL_MAX_SIDE = 512
