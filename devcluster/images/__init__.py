"""The images a user's `helm install` pulls, built here from our Dockerfiles without a Docker
engine (`buildah bud`), on a Debian base made from Debian's packages, and pushed to a local
OCI registry on loopback (`make images`)."""
