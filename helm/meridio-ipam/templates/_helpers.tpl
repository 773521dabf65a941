{{/*
Name of the StatefulSet, of its governing Service and of its pods' "app"
label: ipam-<trench>, as Meridio's chart and operator name them (so that an
existing claim ipam-data-ipam-<trench>-0 is picked up).
*/}}
{{- define "meridio-ipam.name" -}}
{{- printf "ipam-%s" .Values.trench.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The client-facing Service: <ipam.serviceName>-<trench> (Meridio's proxies
dial ipam-service-<trench>:7777).
*/}}
{{- define "meridio-ipam.serviceName" -}}
{{- printf "%s-%s" .Values.ipam.serviceName .Values.trench.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels that select the pods: Meridio's, so the selector (immutable) equals
that of a StatefulSet Meridio made.
*/}}
{{- define "meridio-ipam.selectorLabels" -}}
app: {{ include "meridio-ipam.name" . }}
{{- end -}}

{{/*
Labels of every object: the selector labels and Helm's usual ones.
*/}}
{{- define "meridio-ipam.labels" -}}
{{ include "meridio-ipam.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: ipam
app.kubernetes.io/part-of: meridio
app.kubernetes.io/managed-by: {{ .Release.Service }}
trench: {{ .Values.trench.name | quote }}
{{- end -}}

{{/*
IPAM_NSP_SERVICE: "<nsp.serviceName>-<trench>:<nsp.targetPort>", empty
when no NSP is configured.
*/}}
{{- define "meridio-ipam.nspService" -}}
{{- if .Values.nsp.serviceName -}}
{{- printf "%s-%s:%v" .Values.nsp.serviceName .Values.trench.name .Values.nsp.targetPort -}}
{{- end -}}
{{- end -}}

{{/*
The health address the daemon serves: ipam.probe.addr, else probe.addr.
*/}}
{{- define "meridio-ipam.healthAddr" -}}
{{- $addr := .Values.probe.addr -}}
{{- with .Values.ipam.probe -}}
{{- $addr = .addr | default $addr -}}
{{- end -}}
{{- $addr -}}
{{- end -}}

{{/*
One exec probe, resolved as Meridio's chart does: probe.{addr,service},
overridden by ipam.probe.{addr,service,spiffe}, overridden by
ipam.probe.<kind>.{addr,service,spiffe}. Timings are Meridio's unless the
per-kind map sets them. Arguments: dict "kind" (startup, readiness or
liveness) and "root".
*/}}
{{- define "meridio-ipam.probe" -}}
{{- $v := .root.Values -}}
{{- $timings := dict
  "startup" (dict "initialDelaySeconds" 0 "periodSeconds" 2 "timeoutSeconds" 2 "failureThreshold" 30)
  "readiness" (dict "initialDelaySeconds" 0 "periodSeconds" 10 "timeoutSeconds" 3 "failureThreshold" 5)
  "liveness" (dict "initialDelaySeconds" 2 "periodSeconds" 10 "timeoutSeconds" 3 "failureThreshold" 5) -}}
{{- $t := deepCopy (get $timings .kind) -}}
{{- $addr := $v.probe.addr -}}
{{- $service := $v.probe.service -}}
{{- $spiffe := false -}}
{{- with $v.ipam.probe -}}
{{- $addr = .addr | default $addr -}}
{{- $service = .service | default $service -}}
{{- $spiffe = .spiffe | default $spiffe -}}
{{- end -}}
{{- $pk := get ($v.ipam.probe | default dict) .kind | default dict -}}
{{- $addr = $pk.addr | default $addr -}}
{{- $service = $pk.service | default $service -}}
{{- $spiffe = $pk.spiffe | default $spiffe -}}
{{- range $k, $_ := $t -}}
{{- if hasKey $pk $k -}}
{{- $_ := set $t $k (get $pk $k) -}}
{{- end -}}
{{- end -}}
exec:
  command:
    - /bin/grpc_health_probe
    - -addr={{ $addr }}
    - -service={{ $service }}
    {{- if $spiffe }}
    - -spiffe
    - -rpc-timeout=1s
    {{- else }}
    - -rpc-timeout=400ms
    {{- end }}
    - -connect-timeout=400ms
initialDelaySeconds: {{ $t.initialDelaySeconds }}
periodSeconds: {{ $t.periodSeconds }}
timeoutSeconds: {{ $t.timeoutSeconds }}
failureThreshold: {{ $t.failureThreshold }}
{{- end -}}
