"""The API explorer and JSON gateway: a browser page and HTTP/JSON over the public gRPC API, served with FastAPI."""
