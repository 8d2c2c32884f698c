{{/* Names and labels shared by every object of the chart. */}}
{{- define "kiln.fullname" -}}
{{- if contains "kiln" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kiln" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kiln.labels" -}}
app.kubernetes.io/name: kiln
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kiln.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "kiln.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "kiln.fullname" .)) -}}
{{- end -}}

{{/* Environment of every Kiln container: shared settings, secrets, and where the config is. */}}
{{- define "kiln.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "kiln.fullname" . }}-env
  - secretRef:
      name: {{ include "kiln.secretName" . }}
{{- end -}}

{{/* Probes of the worker services (shared/bus/health.py); the gateway has its own. */}}
{{- define "kiln.workerProbes" -}}
ports:
  - {name: health, containerPort: {{ .Values.healthPort }}}
livenessProbe:
  httpGet: {path: /healthz, port: health}
  periodSeconds: 20
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: health}
  periodSeconds: 10
{{- end -}}

{{- define "kiln.podCommon" -}}
serviceAccountName: {{ include "kiln.fullname" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: pipeline-config
    configMap:
      name: {{ include "kiln.fullname" . }}-pipeline
{{- end -}}
