{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "exchange-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of every object: the release name, plus the chart name unless the release name has it.
*/}}
{{- define "exchange-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: name-version.
*/}}
{{- define "exchange-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "exchange-operator.labels" -}}
helm.sh/chart: {{ include "exchange-operator.chart" . }}
{{ include "exchange-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: exchange
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "exchange-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "exchange-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "exchange-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "exchange-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "exchange-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
kopf command-line arguments: scope, peering, verbosity, liveness endpoint, extras.
*/}}
{{- define "exchange-operator.args" -}}
{{- if .Values.watch.namespaces }}
{{- range .Values.watch.namespaces }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- else }}
- "--all-namespaces"
{{- end }}
{{- if .Values.peering.enabled }}
- {{ printf "--peering=%s" .Values.peering.name | quote }}
{{- else }}
- "--standalone"
{{- end }}
{{- if eq .Values.logLevel "quiet" }}
- "--quiet"
{{- else if eq .Values.logLevel "verbose" }}
- "--verbose"
{{- else if eq .Values.logLevel "debug" }}
- "--debug"
{{- else if ne .Values.logLevel "normal" }}
{{- fail (printf "logLevel must be quiet, normal, verbose or debug, not %q" .Values.logLevel) }}
{{- end }}
- {{ printf "--liveness=http://0.0.0.0:%d/healthz" (int .Values.healthPort) | quote }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
