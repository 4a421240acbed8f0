"""The business of carewire, free of any transport (no litestar, socketio or taskiq here)."""
