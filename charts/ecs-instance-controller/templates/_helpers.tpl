{{/* The app name: also the metrics Service's app.kubernetes.io/name, which the ServiceMonitor
turns into the scrape job the alerts expect (`ecs-instance-controller`). */}}
{{- define "ecs-instance-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name if it contains the chart name (install the release as
`ecs-instance-controller` to get the names of deploy/), else "<release>-<chart>". */}}
{{- define "ecs-instance-controller.fullname" -}}
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

{{/* The selector: the one label of deploy/, so that a Deployment installed with kustomize and
this chart select the same pods (selectors are immutable). */}}
{{- define "ecs-instance-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecs-instance-controller.name" . }}
{{- end }}

{{/* The labels of deploy/ (name, part-of) plus Helm's standard ones. */}}
{{- define "ecs-instance-controller.labels" -}}
{{ include "ecs-instance-controller.selectorLabels" . }}
app.kubernetes.io/part-of: ecs-instance-controller
{{ include "ecs-instance-controller.helmLabels" . }}
{{- end }}

{{/* Helm's standard labels; tests/helm_chart.rs ignores exactly these when it compares the chart
with deploy/. */}}
{{- define "ecs-instance-controller.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* "true" when the replicas run behind the Lease: asked for, or more than one replica (two
controllers without leader election would both act). */}}
{{- define "ecs-instance-controller.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The ServiceAccount the pod runs as: the chart's own (serviceAccount.create), or one the
operator made (serviceAccount.name; e.g. annotated for a cloud identity by another tool). */}}
{{- define "ecs-instance-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecs-instance-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* registry/repository:tag, and @digest when a digest is given (the tag stays for people). */}}
{{- define "ecs-instance-controller.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}{{ end }}
{{- $image := printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- with .Values.image.digest }}{{ $image = printf "%s@%s" $image . }}{{ end }}
{{- $image }}
{{- end }}

{{/* Namespaced RBAC needs namespaces to bind in. */}}
{{- define "ecs-instance-controller.validate" -}}
{{- if and .Values.rbac.namespaced (empty .Values.watchNamespaces) }}
{{- fail "rbac.namespaced=true needs watchNamespaces: the namespaces to watch and bind the rights in" }}
{{- end }}
{{- if and .Values.rrsa.enabled (or (empty .Values.rrsa.roleArn) (empty .Values.rrsa.oidcProviderArn)) }}
{{- fail "rrsa.enabled=true needs rrsa.roleArn and rrsa.oidcProviderArn (docs/security.md, RRSA on ACK)" }}
{{- end }}
{{- if lt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount must be at least 1: without a controller every EcsInstance deletion hangs on its finalizer" }}
{{- end }}
{{- end }}
