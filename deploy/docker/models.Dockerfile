# Models baked into a server image: the folders `leptonkit models export` writes, at /models/NAME, which is where
# the manifests of `leptonkit deploy k8s` serve them from. The build context is the folder holding models/:
#   leptonkit models export tiny@prod build/models/tiny
#   docker build -f deploy/docker/models.Dockerfile --build-arg BASE=leptonkit:cpu -t registry/leptonkit-tiny:3 build
# Owned by root and read-only for the server's user: the running server never writes its models.

ARG BASE=leptonkit:cpu
FROM ${BASE}
COPY models/ /models/
