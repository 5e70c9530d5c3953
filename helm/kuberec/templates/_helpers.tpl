{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "kuberec.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name used for every object the chart owns. */}}
{{- define "kuberec.fullname" -}}
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

{{- define "kuberec.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kuberec.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kuberec.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kuberec.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kuberec
{{- end }}

{{- define "kuberec.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kuberec.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace whose RecommenderJobs the operator serves (namespaced mode). */}}
{{- define "kuberec.watchNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}

{{- define "kuberec.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Rules for what the operator manages in a RecommenderJob's namespace. */}}
{{- define "kuberec.workloadRules" -}}
- apiGroups: ["kuberec.io"]
  resources: ["recommenderjobs"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["kuberec.io"]
  resources: ["recommenderjobs/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["kuberec.io"]
  resources: ["recommenderjobs/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["ray.io"]
  resources: ["rayclusters"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
The Feast registry URL. The production feature profile (feature_repo/feature_store.production.yaml)
renders registry_type: sql, so only a SQLAlchemy URL of a shared PostgreSQL through psycopg 3 (the
driver feast[postgres] installs in the images) works; a file registry
(s3://.../registry.db) is refused here rather than failing in the pipeline's features step.
*/}}
{{- define "kuberec.feastRegistry" -}}
{{- $url := .Values.platform.feastRegistry -}}
{{- if not (hasPrefix "postgresql+psycopg://" $url) -}}
{{- fail (printf "platform.feastRegistry must be a Feast SQL registry URL postgresql+psycopg://USER@HOST:5432/DB (the production feature profile renders registry_type: sql; the images ship psycopg 3), got %q" $url) -}}
{{- end -}}
{{- $url -}}
{{- end -}}
