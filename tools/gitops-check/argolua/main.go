// Command argolua evaluates an Argo CD resource health check (health.lua) the way Argo CD does for
// a check installed in argocd-cm, at the release pinned in argocdVersion below (the one place the
// version is written), on gopher-lua at the version that release pins.
//
// Why a harness and not Argo CD's own package: github.com/argoproj/argo-cd/v3/util/lua (and
// github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health) at the pinned release declare
// `go 1.27.0`, newer than the Go toolchain this project requires, and util/lua pulls in Argo CD's
// API types and with them most of Argo CD's dependency graph. This program reproduces, from a
// reading of the pinned sources, what those two packages do with a health script (each function
// read is fingerprinted in upstreamFunctions below, and `argolua upstream-check` fails when one
// changes):
//
//   - util/lua VM.runLua: lua.NewState with SkipOpenLibs unless useOpenLibs is set for the
//     resource (argocd-cm `resource.customizations.useOpenLibs.<group_kind>`, default false;
//     Argo CD's built-in resource_customizations always run with it), then opens package, base and
//     table, and its "safe" os library (time and date only). That safe library is registered
//     under the *table* library's name, so the functions appear as table.time/table.date and no
//     global `os` exists; `require("os")` returns a table with time and date (a preloaded
//     module). So, without useOpenLibs: no string, math, io, os, debug, coroutine or channel
//     library, and no string methods ("x"):upper(). The object is the global `obj` (numbers as
//     Lua numbers), `actionParams` is an empty table, the script runs with a 1 s deadline.
//   - util/lua VM.ExecuteHealthLua: a returned table is JSON-encoded (layeh.com/gopher-json, the
//     version Argo CD pins) and decoded into {status, message, deletionMessage}; a status that is
//     not one of Healthy/Progressing/Degraded/Suspended/Missing/Unknown becomes Unknown "Lua
//     returned an invalid health status"; an empty table gives an empty result; nil means "no
//     health"; any other type or a Lua error is an error.
//   - gitops-engine health.GetResourceHealth: an error becomes Unknown with the error text (Argo
//     CD removes the Lua stack trace first). For an object being deleted (deletionTimestamp set,
//     no argocd.argoproj.io/hook-finalizer), the script's result is replaced by Progressing
//     "Pending deletion" (plus "; blocked by finalizers: a, b") unless the script set a non-empty
//     deletionMessage, in which case the script's status and its deletionMessage are shown.
//   - util/lua TestLuaHealthScript (Argo CD's test of its built-in checks): every case of a
//     health_test.yaml compares the script's own result with healthStatus (`argolua test`). The
//     script is the one GetHealthScript finds for the object's group and kind (its directory,
//     else the first wildcard directory that matches), run with open libraries; upstream-check
//     picks it that way, `argolua test DIR` runs DIR/health.lua.
//
// What differs from Argo CD itself: this is not Argo CD's code. The safe os functions are
// gopher-lua's own os.time/os.date (Argo CD's copies differ only in details of os.date with "!"
// and a time argument); the compiled-script cache, custom actions, wildcard overrides in
// argocd-cm and the built-in checks of other kinds are left out; objects are read from YAML/JSON
// files or stdin instead of the cluster cache (the values Lua sees are the same).
//
// How it is kept honest: `argolua upstream-check` (upstream.go, run by tests/argocd_upstream.rs)
// reads the pinned release's sources from the module zips scripts/build-gitops-check.sh
// downloads, runs every case of Argo CD's own resource_customizations through this harness,
// compares the fingerprints below with the functions they were taken from, and the gopher-lua and
// gopher-json versions linked here with the ones Argo CD's go.mod requires.
//
// Usage:
//
//	argolua [-open-libs] test DIR   every case of DIR/health_test.yaml (Argo CD's layout) against
//	                                DIR/health.lua; one JSON line per case; exit 1 if any differs
//	argolua [-open-libs] eval FILE  FILE is a health.lua; objects as JSON on stdin (an array, or
//	                                one per line); one JSON line per object
//	argolua upstream-check SOURCES  SOURCES is the `go mod download -json` record of the pinned
//	                                release's modules (see upstream.go); exit 1 on any difference
//	argolua version                 prints argocdVersion
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"reflect"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/yaml"
)

// argocdVersion is the Argo CD release this harness reproduces — the one place it is written:
// scripts/build-gitops-check.sh reads it from this line (for its cache key and to download the
// release's sources), `argolua upstream-check` checks those sources, tests/argocd_upstream.rs
// checks that the documentation names this release.
const argocdVersion = "v3.6.1"

// argocdModules are the release's Go modules, with the h1: sums (as go.sum writes them) of the
// module zips this harness was compared with. gitops-engine is tagged with the release's version.
var argocdModules = []pinnedModule{
	{Path: argoCD, Sum: "h1:OmhqeKiR3C//awbFrhQqFdtRI+Qiv17j8vqm3UkMj/g="},
	{Path: gitopsEngine, Sum: "h1:e9NghanU6O6PrxHq4+PaYxd6Rpe0kC48C2Opkpgx/LQ="},
}

const (
	argoCD       = "github.com/argoproj/argo-cd/v3"
	gitopsEngine = "github.com/argoproj/argo-cd/gitops-engine/v3"
)

// upstreamFunctions are the declarations of the pinned release this harness was written from
// (see the package comment for what each one does here), each with the SHA-256 of its syntax
// tree (comments and layout left out: declFingerprint in upstream.go). `argolua upstream-check`
// fails when one of them changed: re-read it, update argolua, then record the new fingerprint the
// check prints.
var upstreamFunctions = []fingerprint{
	// The Lua VM a health script runs in (runScript, openSafeOs, loadSafeOs, toLua).
	{argoCD, "util/lua/lua.go", "func VM.runLua", "4ba92b2359c54efd372158b1da1ce628961e79f1c9889acb707e0cbe1bc7fd22"},
	{argoCD, "util/lua/lua.go", "func VM.runLuaWithResourceActionParameters", "cbbc48b4a6bf677b9a1f7310a0a3e1531928e30af07c5a5f8923c4bf08c654ec"},
	{argoCD, "util/lua/lua.go", "func loadCompiledFunction", "99d3dfd4e4bfc441fa6ed066ab5fc7271e21e54efe60e09cd156af03e9c9411f"},
	{argoCD, "util/lua/lua.go", "func decodeValue", "466eef21add732268d923e7d9973a6fa43285960852a5135d0cd426084e9743c"},
	{argoCD, "util/lua/oslib_safe.go", "func OpenSafeOs", "7ca2cd35d52fa823c833af11b6f6e6c71a84e07de7e3fa881bffe6ce38ca25aa"},
	{argoCD, "util/lua/oslib_safe.go", "func SafeOsLoader", "907d2b22d503b66bad9df50e21a437db4fa2ad92d320a98336204bf48b8d43fd"},
	{argoCD, "util/lua/oslib_safe.go", "var osFuncs", "a26be34b964edc4ecdc686928437ba592f74e6fd9bc6f56749fd15a626bd2b45"},
	// Not mirrored (gopher-lua's own os.time/os.date stand in): a change may change what the
	// package comment says about the differences.
	{argoCD, "util/lua/oslib_safe.go", "func osTime", "a8409f1f83ba27911eecf16d87c6431ca710d44fbb5a0a29133a62415d5fed7b"},
	{argoCD, "util/lua/oslib_safe.go", "func osDate", "bcd49abcaf766ecd8394327063eabd9c9a8fa50c5fd5f91274d232e4eaa83821"},
	// The script's result (runScript's second half, validStatuses).
	{argoCD, "util/lua/lua.go", "func VM.ExecuteHealthLua", "967e33d1a60c2b0abb22bd029a47e1a92fa644b80858312dcf1d383f01b15538"},
	{argoCD, "util/lua/lua.go", "func isValidHealthStatusCode", "f1dd3b55dfdf297f285ef81835d43f35d47e184ef7bab7d85a162f45f735d0d6"},
	{argoCD, "util/lua/lua.go", "const incorrectReturnType", "2d87591b3e7148d167a86e52f5c7232465af11eb245a568b57dda5e693db6953"},
	{argoCD, "util/lua/lua.go", "const invalidHealthStatus", "f8f9756e84ee2cef0f1b34a56c68d258274cbd46575eb65261edae76339e5b6c"},
	// Which script runs, with which libraries (-open-libs; upstream-check's script choice).
	{argoCD, "util/lua/lua.go", "func ResourceHealthOverrides.GetResourceHealth", "852644d0e2b1cba830a6cb02e2ec31e3881b8a979fec2dce951b7f43811dd628"},
	{argoCD, "util/lua/lua.go", "func VM.GetHealthScript", "4cfb1c51d5ccff53b71550121d9612e8a85d8435ab817441e835b7f00557178b"},
	{argoCD, "util/lua/lua.go", "func GetConfigMapKey", "1c85671a069ccea6eb4aad38486ebe528b364ec5c6822d4729d56d0a3dcac3d8"},
	{argoCD, "util/lua/lua.go", "func getGlobHealthScriptPaths", "efc98f2585b6527f1f5a54ef55a9c195eb39e47d67e014551c8ef9a2d7aadecb"},
	{argoCD, "util/lua/lua.go", "func getWildcardBuiltInHealthOverrideLua", "6a75eb601384bcf6c0d2ac7db623601492b030664249c84fbb7daf6ec7952e2e"},
	// Argo CD's test of its built-in checks (runTests, upstream-check).
	{argoCD, "util/lua/health_test.go", "func TestLuaHealthScript", "3c9848dad348713e6fd6b9f2f6d6d2eca488cbd444695a2675dac5858e3c231a"},
	{argoCD, "util/lua/health_test.go", "type IndividualTest", "c809c852e3c4b92579b6e0fcd2898e1c5025879564e300121c66dc7216299aed"},
	// What Argo CD shows for the result (shown, healthStatus, hookFinalizer).
	{gitopsEngine, "pkg/health/health.go", "func GetResourceHealth", "036a2f9ad2d2bb17fb2d433aa46a841abf376b2b52edb5fd192e25c34bf3cc3b"},
	{gitopsEngine, "pkg/health/health.go", "func pendingDeletionHealth", "36e09b576761bf2ffa02c9afd24c16adf3674ceee865ff795aa3fd6f480e4733"},
	{gitopsEngine, "pkg/health/health.go", "type HealthStatus", "c4e3fab60a405a130c361ff0cc25a13e08df771a5d1bafa5868347ec59b89c22"},
	{gitopsEngine, "pkg/sync/hook/hook.go", "func HasHookFinalizer", "0f329b89818fae22d8204d175aad13f6821d6931df56b1d25e74c60e9858af29"},
	{gitopsEngine, "pkg/sync/hook/hook.go", "const HookFinalizer", "e370cec7bb4992c6ab4f7584b0c406086e5e6e236dbd7b164c69e157ee72f7ef"},
}

// healthStatus is what a health script returns, as Argo CD decodes it.
type healthStatus struct {
	Status          string `json:"status,omitempty"`
	Message         string `json:"message,omitempty"`
	DeletionMessage string `json:"deletionMessage,omitempty"`
}

// shownHealth is what Argo CD shows for the resource (and aggregates into the Application).
type shownHealth struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type evaluation struct {
	InputPath string        `json:"inputPath,omitempty"`
	Name      string        `json:"name,omitempty"`
	Expected  *healthStatus `json:"expected,omitempty"`
	Pass      *bool         `json:"pass,omitempty"`
	// Script is the script's own result (what Argo CD's health_test.yaml cases compare), null
	// when it returned nil or failed.
	Script *healthStatus `json:"script"`
	Error  string        `json:"error,omitempty"`
	// Health is what Argo CD shows for the resource; null when it has no health.
	Health *shownHealth `json:"health"`
}

var validStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

const hookFinalizer = "argocd.argoproj.io/hook-finalizer"

// safeOs holds the two os functions Argo CD lets health scripts use.
var safeOs map[string]lua.LGFunction

func init() {
	scratch := lua.NewState()
	defer scratch.Close()
	osLib := scratch.GetGlobal(lua.OsLibName).(*lua.LTable)
	safeOs = map[string]lua.LGFunction{}
	for _, name := range []string{"time", "date"} {
		safeOs[name] = osLib.RawGetString(name).(*lua.LFunction).GFunction
	}
}

func openSafeOs(l *lua.LState) int {
	// As Argo CD does: registered under the table library's name (see the package comment).
	l.Push(l.RegisterModule(lua.TabLibName, safeOs))
	return 1
}

func loadSafeOs(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOs))
	return 1
}

func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]interface{}:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

// runScript is util/lua's ExecuteHealthLua: (nil, nil) when the script returns nil.
func runScript(object map[string]interface{}, script string, openLibs bool) (*healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, fmt.Errorf("opening the %q library: %w", lib.name, err)
		}
	}
	l.PreloadModule(lua.OsLibName, loadSafeOs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, object))

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
		err = apiErr
	}
	if err != nil {
		return nil, err
	}

	returned := l.Get(-1)
	switch returned.Type() {
	case lua.LTNil:
		return nil, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return nil, err
	}
	result := &healthStatus{}
	if err := json.Unmarshal(encoded, result); err != nil {
		var typeError *json.UnmarshalTypeError
		if errors.As(err, &typeError) {
			return &healthStatus{}, nil
		}
		return nil, err
	}
	if !validStatuses[result.Status] {
		return &healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return result, nil
}

func metadata(object map[string]interface{}) map[string]interface{} {
	m, _ := object["metadata"].(map[string]interface{})
	return m
}

func beingDeleted(object map[string]interface{}) bool {
	text, _ := metadata(object)["deletionTimestamp"].(string)
	_, err := time.Parse(time.RFC3339, text)
	return text != "" && err == nil
}

func finalizers(object map[string]interface{}) []string {
	var names []string
	list, _ := metadata(object)["finalizers"].([]interface{})
	for _, item := range list {
		if name, ok := item.(string); ok {
			names = append(names, name)
		}
	}
	return names
}

// shown is gitops-engine's GetResourceHealth for a kind with a Lua check and no built-in check.
func shown(object map[string]interface{}, script *healthStatus, scriptErr error) *shownHealth {
	if scriptErr != nil {
		return &shownHealth{Status: "Unknown", Message: scriptErr.Error()}
	}
	names := finalizers(object)
	hooked := false
	for _, name := range names {
		hooked = hooked || name == hookFinalizer
	}
	if beingDeleted(object) && !hooked {
		if script != nil && script.DeletionMessage != "" {
			return &shownHealth{Status: script.Status, Message: script.DeletionMessage}
		}
		message := "Pending deletion"
		if len(names) > 0 {
			message += "; blocked by finalizers: " + strings.Join(names, ", ")
		}
		return &shownHealth{Status: "Progressing", Message: message}
	}
	if script == nil {
		return nil
	}
	return &shownHealth{Status: script.Status, Message: script.Message}
}

func evaluate(object map[string]interface{}, script string, openLibs bool) evaluation {
	result, err := runScript(object, script, openLibs)
	e := evaluation{Script: result, Health: shown(object, result, err)}
	if err != nil {
		e.Error = err.Error()
	}
	e.Name, _ = metadata(object)["name"].(string)
	return e
}

type testCase struct {
	InputPath    string        `json:"inputPath"`
	HealthStatus *healthStatus `json:"healthStatus"`
}

type testFile struct {
	Tests []testCase `json:"tests"`
}

// readObject reads an object (YAML or JSON) from fsys, as Argo CD's test does.
func readObject(fsys fs.FS, name string) (map[string]interface{}, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	object := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &object); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return object, nil
}

// readTests reads dir/health_test.yaml from fsys.
func readTests(fsys fs.FS, dir string) (testFile, error) {
	var tests testFile
	data, err := fs.ReadFile(fsys, path.Join(dir, "health_test.yaml"))
	if err != nil {
		return tests, err
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		return tests, fmt.Errorf("%s: %w", path.Join(dir, "health_test.yaml"), err)
	}
	return tests, nil
}

// runCase is one case of Argo CD's own test: the script's result equals healthStatus.
func runCase(fsys fs.FS, dir string, test testCase, script string, openLibs bool) (evaluation, error) {
	object, err := readObject(fsys, path.Join(dir, test.InputPath))
	if err != nil {
		return evaluation{}, err
	}
	e := evaluate(object, script, openLibs)
	e.InputPath = test.InputPath
	e.Expected = test.HealthStatus
	pass := e.Error == "" && reflect.DeepEqual(test.HealthStatus, e.Script)
	e.Pass = &pass
	return e, nil
}

func runTests(dir string, openLibs bool, out *json.Encoder) (bool, error) {
	fsys := os.DirFS(dir)
	script, err := fs.ReadFile(fsys, "health.lua")
	if err != nil {
		return false, err
	}
	tests, err := readTests(fsys, ".")
	if err != nil {
		return false, err
	}
	if len(tests.Tests) == 0 {
		return false, errors.New("health_test.yaml has no tests")
	}
	allPass := true
	for _, test := range tests.Tests {
		e, err := runCase(fsys, ".", test, string(script), openLibs)
		if err != nil {
			return false, err
		}
		allPass = allPass && *e.Pass
		if err := out.Encode(e); err != nil {
			return false, err
		}
	}
	return allPass, nil
}

// stdinObjects reads a JSON array of objects or a stream of objects.
func stdinObjects() ([]map[string]interface{}, error) {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil, err
	}
	input = bytes.TrimSpace(input)
	var objects []map[string]interface{}
	if len(input) > 0 && input[0] == '[' {
		err := json.Unmarshal(input, &objects)
		return objects, err
	}
	decoder := json.NewDecoder(bytes.NewReader(input))
	for {
		var object map[string]interface{}
		err := decoder.Decode(&object)
		if err == io.EOF {
			return objects, nil
		}
		if err != nil {
			return nil, fmt.Errorf("object %d: %w", len(objects)+1, err)
		}
		objects = append(objects, object)
	}
}

func main() {
	openLibs := flag.Bool("open-libs", false, "run as with argocd-cm useOpenLibs (and as Argo CD's built-in checks)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: argolua [-open-libs] test DIR | eval HEALTH.lua < objects.json | upstream-check SOURCES.json | version")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 1 && flag.Arg(0) == "version" {
		fmt.Println(argocdVersion)
		return
	}
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	out := json.NewEncoder(w)
	out.SetEscapeHTML(false)
	fail := func(err error) {
		w.Flush()
		fmt.Fprintf(os.Stderr, "argolua: %v\n", err)
		os.Exit(2)
	}
	code := 0
	switch flag.Arg(0) {
	case "test":
		allPass, err := runTests(flag.Arg(1), *openLibs, out)
		if err != nil {
			fail(err)
		}
		if !allPass {
			code = 1
		}
	case "upstream-check":
		ok, err := upstreamCheck(flag.Arg(1), w)
		if err != nil {
			fail(err)
		}
		if !ok {
			code = 1
		}
	case "eval":
		script, err := os.ReadFile(flag.Arg(1))
		if err != nil {
			fail(err)
		}
		objects, err := stdinObjects()
		if err != nil {
			fail(fmt.Errorf("reading objects from stdin: %w", err))
		}
		for _, object := range objects {
			if err := out.Encode(evaluate(object, string(script), *openLibs)); err != nil {
				fail(err)
			}
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err := w.Flush(); err != nil {
		fail(err)
	}
	os.Exit(code)
}
