"""Serve many exported generators to many clients: `ingan-serve` on Ray Serve, and its client.

    ingan-serve models/ --models-per-replica 3 --replicas 2      # HTTP on :8000
    ingan-run http://127.0.0.1:8000/photo --size 640x360 -o out.png

One job per module; only `app` and `server` import ray, and nothing here imports torch:

* `catalog`  - MODELS scanned once at start into model ids, files and size ranges;
* `options`  - every server setting, and the Ray Serve builder arguments it becomes;
* `protocol` - the HTTP API as plain functions: routes, query parsing, errors, replies;
* `replica`  - what a replica does with a request: load, run, encode (no Ray);
* `app`      - the Ray Serve deployment (`Retargeter`: HTTP and multiplexed models) and
  `build_app`, the builder a Ray Serve config file names;
* `config`   - the Ray Serve YAML config for `serve run` / `serve deploy`;
* `server`   - starting or joining a Ray cluster, running the app, shutting down cleanly;
* `client`   - a standard-library HTTP client (the Python API and `ingan-run http://...`);
* `cli`      - the `ingan-serve` command.

docs/serve.md describes the HTTP API and the deployment options.
"""
