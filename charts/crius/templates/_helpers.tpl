{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "crius.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource names: the release name, plus the chart name unless it already contains it. */}}
{{- define "crius.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "crius.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crius.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "crius.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "crius.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "crius.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
A TOML string. JSON string syntax is a subset of TOML basic strings (the
escapes \" \\ \b \f \n \r \t \uXXXX), so toJson quotes safely where Helm's
`quote` (Go %q, which can emit \x.. escapes) would not.
*/}}
{{- define "crius.tomlString" -}}
{{- . | toString | toJson -}}
{{- end -}}

{{/* The crius config file: every key maps to one in docs/configuration.md. */}}
{{- define "crius.configToml" -}}
{{- $c := .Values.config -}}
# Managed by the crius Helm chart (release {{ .Release.Name }}); edits on the node are overwritten.
shutdown_grace_secs = {{ $c.shutdownGraceSecs | int64 }}

[log]
level = {{ include "crius.tomlString" $c.log.level }}
format = {{ include "crius.tomlString" $c.log.format }}

[tracing]
otlp_endpoint = {{ include "crius.tomlString" $c.tracing.otlpEndpoint }}
sampling_ratio = {{ $c.tracing.samplingRatio | float64 }}

[image]
default_registry = {{ include "crius.tomlString" $c.image.defaultRegistry }}
insecure_registries = {{ $c.image.insecureRegistries | default list | toJson }}
max_concurrent_downloads = {{ $c.image.maxConcurrentDownloads | int64 }}
request_timeout_secs = {{ $c.image.requestTimeoutSecs | int64 }}
{{- /* null (the default): the key is left out and crius's own default applies. */}}
{{- if kindIs "string" $c.image.hostsDir }}
hosts_dir = {{ include "crius.tomlString" $c.image.hostsDir }}
{{- end }}
{{- if kindIs "string" $c.image.credentialsFile }}
credentials_file = {{ include "crius.tomlString" $c.image.credentialsFile }}
{{- end }}

[image.mirrors]
{{- range $host, $endpoints := $c.image.mirrors }}
{{ include "crius.tomlString" $host }} = {{ $endpoints | default list | toJson }}
{{- end }}

[cni]
conf_dir = {{ include "crius.tomlString" $c.cni.confDir }}
bin_dirs = {{ $c.cni.binDirs | toJson }}

[pod]
shm_size_bytes = {{ $c.pod.shmSizeBytes | int64 }}

[runtime]
max_log_line_bytes = {{ $c.runtime.maxLogLineBytes | int64 }}

[runtime.handlers]
{{- range $name, $h := $c.runtime.handlers }}
[runtime.handlers.{{ include "crius.tomlString" $name }}]
runtime_path = {{ include "crius.tomlString" ($h.runtimePath | default "") }}
{{- end }}

[streaming]
address = {{ include "crius.tomlString" $c.streaming.address }}
port = {{ $c.streaming.port | int64 }}
tls_cert_file = {{ include "crius.tomlString" $c.streaming.tlsCertFile }}
tls_key_file = {{ include "crius.tomlString" $c.streaming.tlsKeyFile }}
{{- if kindIs "string" $c.metrics.address }}

[metrics]
address = {{ include "crius.tomlString" $c.metrics.address }}
{{- end }}
{{- with $c.extraToml }}

{{ . }}
{{- end }}
{{- end -}}
