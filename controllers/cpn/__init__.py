"""Computing Power Network (CPN) service mapping: place a service's components on compute nodes
and its virtual links on paths, online, as services arrive and leave.

Modules, one job each:

* model - infrastructure, service requests, mappings, the residual `State` (check, allocate,
  release) and the fragmentation metrics; the latency rule is stated there.
* instances - seeded generators (Waxman, Barabasi-Albert, fat tree), the presets simple /
  medium / complex, the JSON format (docs/cpn-instances.md), `infrastructure_from_dict`.
* fitness - the per-decision context every mapper uses: candidate nodes, bandwidth-constrained
  routing, greedy construction, the "cost" and fragmentation-aware "frag" fitness.
* baselines - first_fit, best_fit, random, two_stage.
* search - ga and flat pso (and the discrete PSO step ABS shares).
* partition, abs_search, swarm - ABS: service-graph partitioning, the bilevel search, and where
  its swarms run (serial, threads, processes, Ray).
* mappers - the `Mapper` protocol and the registry (`make_mapper`).
* online, metrics - the online replay and what it measures; evaluate - the comparison CLI
  (`python -m controllers.cpn.evaluate`); bench - decision-time benchmark.

Use::

    from controllers.cpn.instances import generate, load_instance
    from controllers.cpn.mappers import make_mapper
    from controllers.cpn.online import simulate

    metrics = simulate(generate("complex", seed=0), make_mapper("abs"), seed=0)
"""
