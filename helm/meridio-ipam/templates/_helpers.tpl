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

{{/*
2^n, for the host-bit checks below (sprig has no power function).
*/}}
{{- define "meridio-ipam.pow2" -}}
{{- $p := 1 -}}
{{- range until (int .) -}}
{{- $p = mul $p 2 -}}
{{- end -}}
{{- $p -}}
{{- end -}}

{{/*
The 16-bit groups of an IPv6 address the schema has let through (RFC 3986
syntax), "::" expanded and a dotted IPv4 tail made two groups, as a list in
JSON. Hex groups are read by int64 of "0x..." (strconv base 0).
*/}}
{{- define "meridio-ipam.v6groups" -}}
{{- $halves := list -}}
{{- range $i, $half := splitList "::" . -}}
{{- $groups := list -}}
{{- range compact (splitList ":" $half) -}}
{{- if contains "." . -}}
{{- $o := splitList "." . -}}
{{- $groups = append $groups (add (mul (atoi (index $o 0)) 256) (atoi (index $o 1))) -}}
{{- $groups = append $groups (add (mul (atoi (index $o 2)) 256) (atoi (index $o 3))) -}}
{{- else -}}
{{- $groups = append $groups (int64 (printf "0x%s" .)) -}}
{{- end -}}
{{- end -}}
{{- $halves = append $halves $groups -}}
{{- end -}}
{{- $all := first $halves -}}
{{- if eq (len $halves) 2 -}}
{{- $zeros := sub 8 (add (len (index $halves 0)) (len (index $halves 1))) -}}
{{- range until (int $zeros) -}}
{{- $all = append $all 0 -}}
{{- end -}}
{{- $all = concat $all (index $halves 1) -}}
{{- end -}}
{{- toJson $all -}}
{{- end -}}

{{/*
"host bits set" when the prefix text (already through the schema) has a
bit set past its length, as the daemon refuses it; empty otherwise.
*/}}
{{- define "meridio-ipam.hostBits" -}}
{{- $addr := first (splitList "/" .) -}}
{{- $len := int (last (splitList "/" .)) -}}
{{- $groups := list -}}
{{- $width := 16 -}}
{{- if contains ":" $addr -}}
{{- $groups = include "meridio-ipam.v6groups" $addr | fromJsonArray -}}
{{- else -}}
{{- $width = 8 -}}
{{- range splitList "." $addr -}}
{{- $groups = append $groups (atoi .) -}}
{{- end -}}
{{- end -}}
{{- range $i, $g := $groups -}}
{{- $lo := mul $i $width -}}
{{- $free := sub (add $lo $width) $len -}}
{{- if gt (int $free) 0 -}}
{{- if gt (int $free) $width -}}{{- $free = $width -}}{{- end -}}
{{- if ne (mod (int64 $g) (int64 (include "meridio-ipam.pow2" $free))) 0 -}}
host bits set
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
What the schema cannot say and the daemon refuses at start (exit 2, the
pod in CrashLoopBackOff): host bits of the subnets, the conduit and node
lengths against the subnet and each other (both families, as the daemon
reads both pools whatever ipFamily is; an empty subnet is the daemon's
default), conduit names longer than 253 bytes or repeated, the metrics
port equal to the gRPC port. Fails with the value's path; renders nothing.
*/}}
{{- define "meridio-ipam.validate" -}}
{{- $v := .Values -}}
{{- $pools := list
  (dict "fam" "ipv4" "prefix" $v.subnetPool.ipv4 "default" "169.255.0.0/16" "nodemax" 30)
  (dict "fam" "ipv6" "prefix" $v.subnetPool.ipv6 "default" "fd00::/48" "nodemax" 126) -}}
{{- range $pools -}}
{{- $prefix := .prefix | default .default -}}
{{- if include "meridio-ipam.hostBits" $prefix -}}
{{- fail (printf "subnetPool.%s %q: host bits set (the address must be the first of the subnet)" .fam $prefix) -}}
{{- end -}}
{{- $plen := int (last (splitList "/" $prefix)) -}}
{{- $cl := int (get $v.subnetPool.conduitPrefixLength .fam) -}}
{{- $nl := int (get $v.subnetPool.nodePrefixLength .fam) -}}
{{- if le $cl $plen -}}
{{- fail (printf "subnetPool.conduitPrefixLength.%s (%d) must be longer than the length of subnetPool.%s %s" .fam $cl .fam $prefix) -}}
{{- end -}}
{{- if le $nl $cl -}}
{{- fail (printf "subnetPool.nodePrefixLength.%s (%d) must be longer than subnetPool.conduitPrefixLength.%s (%d)" .fam $nl .fam $cl) -}}
{{- end -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $c := $v.conduits -}}
{{- $name := trimAll " " $c -}}
{{- if gt (len $name) 253 -}}
{{- fail (printf "conduits[%d]: a conduit name is at most 253 bytes, not %d" $i (len $name)) -}}
{{- end -}}
{{- if hasKey $seen $name -}}
{{- fail (printf "conduits[%d] %q repeats conduits[%v]" $i $name (get $seen $name)) -}}
{{- end -}}
{{- $_ := set $seen $name $i -}}
{{- end -}}
{{- if and $v.metrics.port (eq (int $v.metrics.port) (int $v.ipam.targetPort)) -}}
{{- fail (printf "metrics.port (%v) must differ from ipam.targetPort" $v.metrics.port) -}}
{{- end -}}
{{- end -}}
