"""The RecModel operator: a RecModel custom resource in, a served ranking model out."""

GROUP = "recmodel.dev"
VERSION = "v1alpha1"
PLURAL = "recmodels"
KIND = "RecModel"
FIELD_MANAGER = "recmodel-operator"
