"""The Python SDK: a model's whole life as objects, thin faces over the functions the CLI calls.

``PretrainModel`` / ``FineTuneModel`` / ``SFTModel`` (``sdk/training.py``) train and register; ``Model``
(``sdk/model.py``, also ``leptonkit.load``) is one registered version; ``DeployModel`` (``sdk/deployment.py``) serves
models and custom services locally, on Ray Serve or as Kubernetes manifests; ``resources=`` names a shape
(``sdk/resources.py``). All are exported lazily from ``leptonkit``.
"""
