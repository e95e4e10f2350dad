{{/* Names: every object is prefixed with the release's name (and "courier" unless it says so). */}}
{{- define "courier.fullname" -}}
{{- if contains "courier" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-courier" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "courier.labels" -}}
app.kubernetes.io/name: courier
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (dict "root" $ "component" "proxy") */}}
{{- define "courier.selector" -}}
app.kubernetes.io/name: courier
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A Courier image: (dict "root" $ "name" "courier-proxy") */}}
{{- define "courier.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .name (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{- define "courier.secretName" -}}
{{- default (printf "%s-credentials" (include "courier.fullname" .)) .Values.secret.existingSecret -}}
{{- end -}}

{{/* The host PostgreSQL answers on: its Service, or on one host (podman) its pod's name. */}}
{{- define "courier.postgresHost" -}}
{{- if .Values.podman.enabled -}}
{{- printf "%s-postgres-pod-0" (include "courier.fullname" .) -}}
{{- else -}}
{{- printf "%s-postgres" (include "courier.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The proxy's worst-case shutdown drain, in milliseconds, from its configuration (the proxy's
defaults where a key is not set): the preStop sleep, in-flight requests (ack timeout + enqueue
wait + 5 s), the retry scheduler's round (dlq.ack_timeout_ms + 5 s), the producer's flush.
*/}}
{{- define "courier.proxyDrainMs" -}}
{{- $c := .Values.proxy.config -}}
{{- $requests := add (dig "delivery" "ack_timeout_ms" 5000 $c) (dig "delivery" "enqueue_wait_ms" 100 $c) 5000 -}}
{{- $retry := add (dig "dlq" "ack_timeout_ms" 30000 $c) 5000 -}}
{{- $flush := dig "delivery" "shutdown_flush_ms" 15000 $c -}}
{{- add (mul .Values.proxy.preStopSleepSeconds 1000) $requests $retry $flush -}}
{{- end -}}

{{- define "courier.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "courier.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/*
The name of a pod's emptyDir volume: (dict "root" $ "owner" "proxy-0" "name" "tmp"). podman
kube play makes each a named volume, shared by every pod that names it alike: there, it
carries its owner's full name.
*/}}
{{- define "courier.emptyDirName" -}}
{{- if .root.Values.podman.enabled -}}
{{- printf "%s-%s-%s" (include "courier.fullname" .root) .owner .name -}}
{{- else -}}
{{- .name -}}
{{- end -}}
{{- end -}}

{{/*
TOML of a values map: (dict "table" "" "map" .Values.proxy.config). Helm's toToml writes every
number as a float (5000.0), which the proxy's integer keys refuse: whole numbers are written as
integers here, and keys Kafka-style ("linger.ms") quoted. Scalars first, then each sub-map as a [table] (recursively, dotted names).
*/}}
{{- define "courier.toml" -}}
{{- $tables := list -}}
{{- if .table }}
[{{ .table }}]
{{- end }}
{{- range $k, $v := .map }}
{{- if kindIs "map" $v }}
{{- $tables = append $tables $k }}
{{- else }}
{{- $key := ternary $k (toJson $k) (regexMatch "^[A-Za-z0-9_-]+$" $k) }}
{{- if and (kindIs "float64" $v) (eq (floor $v) $v) }}
{{ $key }} = {{ int64 $v }}
{{- else }}
{{ $key }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{- end }}
{{- range $tables }}
{{ include "courier.toml" (dict "table" (ternary . (printf "%s.%s" $.table .) (eq $.table "")) "map" (get $.map .)) }}
{{- end }}
{{- end -}}

{{/*
An HTTP probe: (dict "root" $ "path" "/healthz" "port" 8080). On one host (podman) an exec of
busybox's wget instead: Podman runs a liveness probe as the container's health check, and
turns httpGet into curl, which the images do not carry.
*/}}
{{- define "courier.httpProbe" -}}
{{- if .root.Values.podman.enabled -}}
exec:
  command: ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{{ .port }}{{ .path }}"]
{{- else -}}
httpGet: {path: {{ .path }}, port: {{ .port }}}
{{- end -}}
{{- end -}}
