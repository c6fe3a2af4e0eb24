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
Operator settings as environment variables (`python -m exchange_operator` reads EXCHANGE_OPERATOR_*,
see operator/exchange_operator/settings.py): scope, peering, liveness endpoint, log level.
*/}}
{{- define "exchange-operator.env" -}}
{{- if not (has .Values.logLevel (list "DEBUG" "INFO" "WARNING" "ERROR")) }}
{{- fail (printf "logLevel must be DEBUG, INFO, WARNING or ERROR, not %q" .Values.logLevel) }}
{{- end }}
- name: EXCHANGE_OPERATOR_NAMESPACES
  value: {{ join "," .Values.watch.namespaces | quote }}
- name: EXCHANGE_OPERATOR_STANDALONE
  value: {{ (not .Values.peering.enabled) | toString | quote }}
- name: EXCHANGE_OPERATOR_LIVENESS
  value: {{ printf "http://0.0.0.0:%d/healthz" (int .Values.healthPort) | quote }}
- name: EXCHANGE_OPERATOR_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: EXCHANGE_OPERATOR_METRICS_PORT
  value: {{ .Values.metrics.port | int | toString | quote }}
{{- end }}
