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

{{/* Non-secret settings of every Kiln container (the -env ConfigMap). */}}
{{- define "kiln.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "kiln.fullname" . }}-env
{{- end -}}

{{/* The secret keys ONE service uses (values.secretKeys.<service>), each by secretKeyRef: no pod
     gets every secret. Called with (list $ "gateway"); items of an `env:` list. */}}
{{- define "kiln.secretEnv" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- range $key := index $root.Values.secretKeys $service }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "kiln.secretName" $root }}
      {{- if and (eq $key "KILN_AMQP_URL") $root.Values.brokerUsers.perService }}
      key: KILN_AMQP_URL_{{ upper $service }}
      {{- else }}
      key: {{ $key }}
      {{- end }}
      {{- if not (has $key (list "KILN_AMQP_URL" "KILN_DATABASE_URL")) }}
      optional: true
      {{- end }}
{{- end }}
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

{{/* Called with (list $ "<service>"): its own ServiceAccount; only the deployer's has a token. */}}
{{- define "kiln.podCommon" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
serviceAccountName: {{ include "kiln.fullname" $root }}-{{ $service }}
automountServiceAccountToken: {{ eq $service "deployer" }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: pipeline-config
    configMap:
      name: {{ include "kiln.fullname" $root }}-pipeline
{{- end -}}
