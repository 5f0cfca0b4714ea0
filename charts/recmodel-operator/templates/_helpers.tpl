{{- define "recmodel.name" -}}recmodel-operator{{- end -}}

{{- define "recmodel.fullname" -}}
{{- if contains "recmodel" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-recmodel-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "recmodel.labels" -}}
app.kubernetes.io/name: {{ include "recmodel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: recmodel
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "recmodel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recmodel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "recmodel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "recmodel.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "recmodel.installRuntime" -}}
{{- $mode := toString .Values.kserveRuntime.install -}}
{{- if eq $mode "true" -}}true
{{- else if and (eq $mode "auto") (.Capabilities.APIVersions.Has "serving.kserve.io/v1alpha1/ClusterServingRuntime") -}}true
{{- end -}}
{{- end -}}
