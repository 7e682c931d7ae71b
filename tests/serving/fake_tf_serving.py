"""A test stand-in for TF Serving's REST API over one exported SavedModel.

It implements the status, metadata and row-format predict contract that the
client uses; the real `tensorflow_model_server` is not installable on CI.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import tensorflow as tf


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet handler that answers with JSON bodies."""

    def log_message(self, *args):
        pass

    def _send(self, code, payload):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(base_dir: str, name: str):
    """Starts the server on 127.0.0.1 (a free port); returns `(url, shutdown)`."""
    versions = sorted(int(v) for v in os.listdir(base_dir) if v.isdigit())
    models = {v: tf.saved_model.load(os.path.join(base_dir, str(v))) for v in versions}

    class Handler(JSONHandler):
        def _route(self):
            path = self.path.split("?")[0]
            prefix = f"/v1/models/{name}"
            if not path.startswith(prefix):
                other = path.split("/")[3].split(":")[0] if path.count("/") >= 3 else "?"
                self._send(404, {"error": f"Servable not found for request: Latest({other})"})
                return None
            rest = path[len(prefix):]
            version = versions[-1]
            if rest.startswith("/versions/"):
                number = rest[len("/versions/"):].split("/")[0].split(":")[0]
                if not number.isdigit() or int(number) not in models:
                    self._send(404, {"error": f"Servable not found for request: Specific({name}, {number})"})
                    return None
                version = int(number)
                rest = rest[len("/versions/") + len(number):]
            return version, rest

        def do_GET(self):
            route = self._route()
            if route is None:
                return
            version, rest = route
            if rest == "":
                self._send(200, {"model_version_status": [
                    {"version": str(version), "state": "AVAILABLE",
                     "status": {"error_code": "OK", "error_message": ""}}]})
            elif rest == "/metadata":
                signatures = {}
                for key, fn in models[version].signatures.items():
                    inputs = fn.structured_input_signature[1]
                    signatures[key] = {
                        "inputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()} for k, v in inputs.items()},
                        "outputs": {k: {"dtype": v.dtype.name} for k, v in fn.structured_outputs.items()},
                    }
                self._send(200, {"model_spec": {"name": name, "version": str(version)},
                                 "metadata": {"signature_def": {"signature_def": signatures}}})
            else:
                self._send(404, {"error": f"Malformed request: GET {self.path}"})

        def do_POST(self):
            route = self._route()
            if route is None:
                return
            version, rest = route
            if rest != ":predict":
                self._send(404, {"error": f"Malformed request: POST {self.path}"})
                return
            try:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                signature = models[version].signatures[request.get("signature_name", "serving_default")]
                data = request["instances"]
                if data and isinstance(data[0], dict):  # Encoded images.
                    outputs = signature(image_bytes=tf.constant([base64.b64decode(i["b64"]) for i in data]))
                else:  # Row-format pixels, in the signature's own dtype.
                    spec = signature.structured_input_signature[1]["images"]
                    outputs = signature(images=tf.constant(data, spec.dtype))
            except (KeyError, ValueError, TypeError) as err:
                self._send(400, {"error": f"Bad request: {err}"})
                return
            except tf.errors.InvalidArgumentError as err:
                self._send(400, {"error": err.message})
                return
            columns = {k: v.numpy().tolist() for k, v in outputs.items()}
            columns["top_k_labels"] = [[s.decode() for s in row] for row in columns["top_k_labels"]]
            rows = [{k: columns[k][i] for k in columns} for i in range(len(data))]
            self._send(200, {"predictions": rows})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def shutdown():
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", shutdown
