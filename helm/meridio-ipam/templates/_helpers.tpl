{{/*
Chart name, overridable with nameOverride; 63 characters at most (DNS label).
*/}}
{{- define "meridio-ipam.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full object name: fullnameOverride, else "<release>-<chart>" (only the
release when it already holds the chart name).
*/}}
{{- define "meridio-ipam.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Labels that select the pods: stable across upgrades.
*/}}
{{- define "meridio-ipam.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meridio-ipam.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
All labels of every object.
*/}}
{{- define "meridio-ipam.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "meridio-ipam.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: ipam
app.kubernetes.io/part-of: meridio
app.kubernetes.io/managed-by: {{ .Release.Service }}
trench: {{ .Values.trench.name | quote }}
{{- end -}}

{{/*
IPAM_NSP_SERVICE: "<service>:<port>", empty when no NSP is configured.
*/}}
{{- define "meridio-ipam.nspService" -}}
{{- if .Values.nsp.serviceName -}}
{{- printf "%s:%v" .Values.nsp.serviceName .Values.nsp.port -}}
{{- end -}}
{{- end -}}
