"""``asr-adapt serve``: an OpenAI-compatible transcription server that gives each user their
own adapter (HTTP, a live WebSocket, a web page), and the same app as a Ray Serve deployment.

The server is a layer of its own, above the public API and below the CLI: it only uses the
layers below it (profiles, decoding, models, audio)."""
