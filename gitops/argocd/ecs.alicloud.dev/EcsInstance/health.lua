-- Argo CD health check for ecs.alicloud.dev/EcsInstance, mirroring kstatus:
-- being deleted -> Progressing ("Releasing: ..."), or Degraded when the release is Stalled;
-- status older than the spec -> Progressing; Stalled=True -> Degraded;
-- Reconciling=True -> Progressing; Ready=True -> Healthy;
-- Ready=False -> Degraded for InstanceNotFound, else Progressing; no status, or no conditions
-- (the CRD's schema default `status: {observedGeneration: 0}` before the controller's first
-- write) -> Progressing "Waiting for the controller".
--
-- Written for the runtime Argo CD gives a check installed in argocd-cm: gopher-lua (Lua 5.1)
-- with only the base, table and package libraries (no string, math or os unless
-- resource.customizations.useOpenLibs is set), so no string.format or ("..."):method() here.
-- For an object being deleted, Argo CD 3.6+ shows the script's status only together with
-- hs.deletionMessage (otherwise "Pending deletion; blocked by finalizers: ..."); Argo CD before
-- 3.6 does not run health checks for objects being deleted at all.
local hs = {}

local function condition(conditions, type)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
local conditions = nil
if status ~= nil then
  conditions = status.conditions
end
local generation = obj.metadata.generation
-- A status computed for an older generation does not describe the current spec (deletion also
-- bumps the generation).
local current = status ~= nil and status.observedGeneration ~= nil
  and (generation == nil or status.observedGeneration >= generation)
local ready = condition(conditions, "Ready")
local reconciling = condition(conditions, "Reconciling")
local stalled = condition(conditions, "Stalled")

if obj.metadata.deletionTimestamp ~= nil then
  if current and is_true(stalled) then
    hs.status = "Degraded"
    hs.message = message_of(stalled, "Release stalled")
  elseif is_true(reconciling) then
    hs.status = "Progressing"
    hs.message = "Releasing: " .. message_of(reconciling, "in progress")
  elseif is_true(stalled) then
    hs.status = "Progressing"
    hs.message = "Releasing: " .. message_of(stalled, "in progress")
  else
    hs.status = "Progressing"
    hs.message = "Releasing: waiting for the controller"
  end
  -- Never empty: an empty deletionMessage makes Argo CD 3.6+ discard this result.
  hs.deletionMessage = hs.message
  return hs
end

if status == nil or conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller"
  return hs
end

if not current then
  hs.status = "Progressing"
  if generation ~= nil then
    -- tostring, not string.format: the string library is not there. Lua numbers from an
    -- integer print without a fraction in gopher-lua ("3").
    hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for the controller"
  end
  return hs
end

if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = message_of(stalled, "Stalled")
  return hs
end

if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = message_of(reconciling, "Reconciling")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "Ready")
  return hs
end

if ready ~= nil and ready.status == "False" and ready.reason == "InstanceNotFound" then
  hs.status = "Degraded"
  hs.message = message_of(ready, "Instance not found")
  return hs
end

hs.status = "Progressing"
hs.message = message_of(ready, "Waiting for the controller")
return hs
