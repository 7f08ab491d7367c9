"""``cafetalk-rt serve``: live streams over a WebSocket, whole clips over HTTP, and a live page
(``pip install 'cafetalk-rt[serve]'``: FastAPI + uvicorn; no torch needed)."""
