"""The web app and its HTTP API on one server (FastAPI + Gradio, run by uvicorn).

Routes:

* ``/`` — the Gradio page: upload images, read verdicts, scores, evidence and the detector card.
* ``POST /api/detect`` — multipart field ``file`` (repeatable), or the raw image bytes as the body
  (``?name=photo.jpg`` names it); ``?maps=1`` adds the raw per-scale evidence arrays. Answers JSON
  ``{"detector", "threshold", "unsure", "results": [row, ...]}`` with one ``hrrkit detect``-style row
  per file (``name, score, verdict, label, threshold, scale_scores, note, error, width, height``); an unreadable
  file is a row with ``error`` set, not an HTTP error. 413 when a file exceeds the upload limit or a
  request holds too many files.
* ``GET /api/card`` — the detector card (:func:`hrrkit.models.hub.detector_card`) as JSON.
* ``GET /api/health`` — ``{"status": "ok", ...}``.

Gradio keeps uploads in its cache folder; :func:`serve` points it (``GRADIO_TEMP_DIR``) at a fresh
temporary folder that is removed on exit, and turns Gradio's analytics off. Nothing else is written
unless ``save_dir`` is given (then each scored row is appended to ``save_dir/results.jsonl``).
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures (Request, query types) at
# definition time, and the names are imported inside build_api so that Gradio/FastAPI stay optional

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from hrrkit.app.analysis import ImageResult, score_uploads
from hrrkit.app.limits import DEFAULT_MAX_FILE_MB, MAX_IMAGES_PER_REQUEST
from hrrkit.app.render import CSS, card_html, results_html

GRADIO_FLOOR = "6.0"


class AppUnavailableError(RuntimeError):
    """The optional ``app`` extra is not installed; the message says how to install it."""


def _import_gradio():
    try:
        import gradio as gr
    except ImportError as exc:
        raise AppUnavailableError(
            f"hrrkit app needs Gradio (>= {GRADIO_FLOOR}), which is not installed ({exc}); "
            "install the extra: pip install 'hrrkit[app]'"
        ) from None
    return gr


class Scorer:
    """The loaded detector behind both the page and the API; one request scores at a time (the
    model is shared and torch already uses every core for one batch)."""

    def __init__(self, detector: Any, *, card: dict[str, Any], max_file_bytes: int,
                 save_dir: str | os.PathLike | None = None):
        self.detector = detector
        self.card = card
        self.max_file_bytes = int(max_file_bytes)
        self.save_dir = Path(save_dir) if save_dir else None
        self._lock = threading.Lock()

    def score(self, files: list[tuple[str, Any]], *, with_maps: bool = True) -> list[ImageResult]:
        with self._lock:
            results = score_uploads(self.detector, files, with_maps=with_maps)
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            with open(self.save_dir / "results.jsonl", "a", encoding="utf-8") as fh:
                for r in results:
                    fh.write(json.dumps(r.row) + "\n")
        return results

    def page(self, paths: list[str] | None) -> tuple[str, list[dict[str, Any]]]:
        """The Gradio handler: uploaded file paths → (results HTML, JSON rows)."""
        paths = [p for p in (paths or []) if p]
        if len(paths) > MAX_IMAGES_PER_REQUEST:
            message = f"{len(paths)} files at once; upload at most {MAX_IMAGES_PER_REQUEST} per click."
            return f'<p class="hrrkit-error">{message}</p>', []
        # Gradio enforces the upload limit too; this covers files it let through. Too-large files keep
        # their place in the list, as a row with the reason.
        fits = [os.path.getsize(p) <= self.max_file_bytes for p in paths]
        scored = iter(self.score([(os.path.basename(p), p) for p, ok in zip(paths, fits) if ok]))
        results = [next(scored) if ok else ImageResult(os.path.basename(p), {
            "name": os.path.basename(p), "score": None, "verdict": None, "label": None,
            "threshold": self.detector.config.threshold, "scale_scores": None,
            "error": f"FileTooLarge: {os.path.getsize(p)} bytes, over the {self.max_file_bytes / 1e6:g} MB upload limit"})
            for p, ok in zip(paths, fits)]
        return results_html(self.detector, results, band=self.detector.config.unsure), [r.row for r in results]


def build_api(scorer: Scorer):
    """The FastAPI application with the ``/api`` routes (the Gradio page is mounted on it by :func:`create_app`)."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="hrrkit", docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None)
    limit = scorer.max_file_bytes

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "detector": scorer.card.get("name"), "source": scorer.card.get("source")}

    @app.get("/api/card")
    def card() -> dict[str, Any]:
        return scorer.card

    @app.post("/api/detect")
    async def detect(request: Request, maps: bool = False, name: str | None = None) -> dict[str, Any]:
        declared = int(request.headers.get("content-length") or 0)
        if declared > limit * MAX_IMAGES_PER_REQUEST:
            raise HTTPException(413, f"request of {declared} bytes; the upload limit is {limit} bytes per file")
        files: list[tuple[str, bytes]] = []
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=MAX_IMAGES_PER_REQUEST)
            except StarletteHTTPException as exc:  # starlette's "Too many files" is a 400; it is a size limit
                raise HTTPException(413 if "Too many files" in str(exc.detail) else exc.status_code, exc.detail) from None
            for field_name, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    continue
                if value.size is not None and value.size > limit:
                    raise HTTPException(413, f"{value.filename}: {value.size} bytes; the upload limit is {limit} bytes")
                files.append((value.filename or field_name, await value.read()))
        else:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise HTTPException(413, f"body over the upload limit of {limit} bytes")
            if body:
                files.append((name or "upload", bytes(body)))
        if not files:
            raise HTTPException(400, "no image: send multipart field 'file' (curl -F file=@photo.jpg) "
                                     "or the image bytes as the body (curl --data-binary @photo.jpg)")
        if len(files) > MAX_IMAGES_PER_REQUEST:
            raise HTTPException(413, f"{len(files)} files; at most {MAX_IMAGES_PER_REQUEST} per request")
        results = await run_in_threadpool(scorer.score, files, with_maps=maps)
        rows = []
        for r in results:
            row = dict(r.row)
            if maps and r.prediction.get("maps"):
                row["maps"] = {s: m.round(5).tolist() for s, m in r.prediction["maps"].items()}
            rows.append(row)
        config = scorer.detector.config
        return {"detector": scorer.card.get("name"), "threshold": config.threshold,
                "unsure": list(config.unsure) if config.unsure else None, "results": rows}

    return app


def build_page(scorer: Scorer):
    """The Gradio Blocks of the page."""
    gr = _import_gradio()
    card = scorer.card
    limit_mb = scorer.max_file_bytes / 1e6
    with gr.Blocks(title="hrrkit: generated-image detector", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown(
            f"# hrrkit: is this image generated?\n"
            f"Detector **{card.get('name')}** from `{card.get('source')}`. Upload images (up to "
            f"{MAX_IMAGES_PER_REQUEST} at once, {limit_mb:g} MB each, at most "
            f"{(card.get('input') or {}).get('max_pixels')} pixels); each is scored on this machine. "
            "Programs: `POST /api/detect` answers JSON ([API reference](/api/docs))."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                upload = gr.File(label="Images (any format the loader reads: JPEG, PNG, WebP, TIFF, ...)",
                                 file_count="multiple", type="filepath", elem_id="hrrkit-upload")
                button = gr.Button("Detect", variant="primary", elem_id="hrrkit-detect")
                with gr.Accordion("Detector card", open=True):
                    gr.HTML(card_html(card), elem_id="hrrkit-card")
            with gr.Column(scale=2):
                results = gr.HTML(results_html(scorer.detector, []), elem_id="hrrkit-results")
        with gr.Accordion("JSON (what POST /api/detect answers)", open=False):
            raw = gr.JSON(elem_id="hrrkit-json")
        upload.upload(scorer.page, inputs=upload, outputs=[results, raw], api_name="detect")
        button.click(scorer.page, inputs=upload, outputs=[results, raw], api_name=False)
    return page


def create_app(detector: Any, *, card: dict[str, Any] | None = None, max_file_mb: float = DEFAULT_MAX_FILE_MB,
               save_dir: str | os.PathLike | None = None):
    """The ASGI application (FastAPI with the Gradio page mounted at ``/``) for ``detector``."""
    gr = _import_gradio()
    if card is None:
        card = getattr(detector, "card", None) or {"name": detector.config.name, "threshold": detector.config.threshold}
    scorer = Scorer(detector, card=card, max_file_bytes=int(max_file_mb * 1e6), save_dir=save_dir)
    app = build_api(scorer)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts fetched
    return gr.mount_gradio_app(app, build_page(scorer), path="/", max_file_size=f"{max_file_mb:g}mb",
                               css=CSS, theme=theme, ssr_mode=False, footer_links=[])


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def serve(model: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 7860, device: str = "cpu",
          max_file_mb: float = DEFAULT_MAX_FILE_MB, max_pixels: int | None = None,
          save_dir: str | os.PathLike | None = None, log_level: str = "warning") -> int:
    """Load ``model`` (a detector folder or hub repo id), then serve the page and API until Ctrl-C."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    upload_dir = tempfile.mkdtemp(prefix="hrrkit-app-")
    previous_temp = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = upload_dir  # uploads live here and are removed on exit
    try:
        _import_gradio()
        import uvicorn

        from hrrkit.models.detector import HRRDetector
        from hrrkit.models.hub import from_pretrained

        detector = from_pretrained(HRRDetector, model, device=device)
        if max_pixels is not None:
            detector.config.input.max_pixels = int(max_pixels)
            detector.card["input"]["max_pixels"] = int(max_pixels)
        app = create_app(detector, card=detector.card, max_file_mb=max_file_mb, save_dir=save_dir)
        if not _is_loopback(host):
            print(f"hrrkit app: listening on {host}: anyone who can reach this machine can use the detector",
                  file=sys.stderr)
        print(f"hrrkit app: {detector.card.get('name')} from {detector.card.get('source')} at "
              f"http://{host if ':' not in host else f'[{host}]'}:{port}/  (API: POST /api/detect; Ctrl-C stops)\n"
              f"hrrkit app: uploads are kept in {upload_dir} and removed on exit", file=sys.stderr, flush=True)
        # uvicorn re-raises SIGTERM after its graceful shutdown; with Python's default handler the process
        # would die there without running the `finally` below, leaving the upload folder behind
        previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            uvicorn.run(app, host=host, port=port, log_level=log_level)
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
        return 0
    finally:
        shutil.rmtree(upload_dir, ignore_errors=True)
        if previous_temp is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous_temp
