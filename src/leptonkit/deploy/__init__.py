"""Scale-out on existing engines: Ray Serve replicas (``deploy/ray_serve.py``, on the cluster of
``deploy/ray_cluster.py``) and Kubernetes manifests (``deploy/kubernetes.py``). This layer calls ``serve/``; nothing in
``serve/`` imports it."""
