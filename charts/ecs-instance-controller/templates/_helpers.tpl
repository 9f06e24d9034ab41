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
{{- if and .Values.simulator.enabled .Values.rrsa.enabled (empty .Values.simulator.accountsConfigMap) }}
{{- fail "simulator.enabled=true with rrsa.enabled=true needs simulator.accountsConfigMap: the simulator's accounts file with rrsa.roleArn and an OIDC provider trusting the cluster's service-account issuer (ecs-sim/README.md, Accounts file)" }}
{{- end }}
{{- if and .Values.simulator.accountsConfigMap (not .Values.simulator.enabled) }}
{{- fail "simulator.accountsConfigMap needs simulator.enabled=true" }}
{{- end }}
{{- if and .Values.simulator.seed .Values.simulator.seedConfigMap }}
{{- fail "give simulator.seed or simulator.seedConfigMap, not both" }}
{{- end }}
{{- if lt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount must be at least 1: without a controller every EcsInstance deletion hangs on its finalizer" }}
{{- end }}
{{- end }}

{{/* TEST ONLY, simulator.enabled: the simulator's object names, "<fullname>-sim[-…]". */}}
{{- define "ecs-instance-controller.simulator.fullname" -}}
{{- printf "%s-sim" (include "ecs-instance-controller.fullname" . | trunc 47 | trimSuffix "-") }}
{{- end }}

{{/* The simulator's selector: its own name, never the controller's (whose Deployment, metrics
Service and NetworkPolicy select app.kubernetes.io/name=ecs-instance-controller). */}}
{{- define "ecs-instance-controller.simulator.selectorLabels" -}}
app.kubernetes.io/name: ecs-sim
{{- end }}

{{- define "ecs-instance-controller.simulator.labels" -}}
{{ include "ecs-instance-controller.simulator.selectorLabels" . }}
app.kubernetes.io/component: simulator
app.kubernetes.io/part-of: ecs-instance-controller
{{ include "ecs-instance-controller.helmLabels" . }}
{{- end }}

{{/* The simulator image, with the controller's conventions: registry (default image.registry),
repository, tag (default image.tag, else appVersion), @digest when given. */}}
{{- define "ecs-instance-controller.simulator.image" -}}
{{- $sim := .Values.simulator.image }}
{{- $repository := $sim.repository }}
{{- with ($sim.registry | default .Values.image.registry) }}{{ $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}{{ end }}
{{- $image := printf "%s:%s" $repository ($sim.tag | default .Values.image.tag | default .Chart.AppVersion) }}
{{- with $sim.digest }}{{ $image = printf "%s@%s" $image . }}{{ end }}
{{- $image }}
{{- end }}

{{/* The ConfigMap holding the seed (key instances.json): the given one, else the chart's. */}}
{{- define "ecs-instance-controller.simulator.seedConfigMap" -}}
{{- .Values.simulator.seedConfigMap | default (printf "%s-seed" (include "ecs-instance-controller.simulator.fullname" .)) }}
{{- end }}

{{/* The controller's ECS endpoint in simulator mode: the simulator's Service through the
variable the kubelet sets for every Service of the namespace that exists when the container
starts (<NAME>_SERVICE_HOST), so that no cluster DNS is needed. */}}
{{- define "ecs-instance-controller.simulator.endpoint" -}}
{{- $service := include "ecs-instance-controller.simulator.fullname" . | upper | replace "-" "_" }}
{{- printf "http://$(%s_SERVICE_HOST):9100" $service }}
{{- end }}

{{/* The Secret with the simulator's test account, the controller's own credentials in
simulator mode (in place of credentials.secretName). */}}
{{- define "ecs-instance-controller.simulator.credentialsSecret" -}}
{{- printf "%s-credentials" (include "ecs-instance-controller.simulator.fullname" .) }}
{{- end }}
