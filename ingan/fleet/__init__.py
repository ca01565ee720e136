"""Fleets: many images trained by one `ingan-train` command, in this process or on a Ray cluster.

One job per module: `inputs` (which images, and the grouping rule), `manifest` (OUT/fleet.json),
`job` (one group, trained where it runs), `local` and `ray_runner` (the two ways to run the
groups), `record` and `progress` (what the command knows and shows), `fleet` (a run from start
to end) and `cli` (the options ingan-train adds for fleets). docs/training.md, "Fleets".

Layering: fleets build on ingan.train; ingan.train never imports this package except for the
CLI dispatch, and this package imports the exporter (deployment code) only for --export.
"""
