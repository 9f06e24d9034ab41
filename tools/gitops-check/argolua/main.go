// Command argolua evaluates an Argo CD resource health check (health.lua) the way Argo CD v3.6.1
// does for a check installed in argocd-cm, on gopher-lua at the version Argo CD v3.6.1 pins.
//
// Why a harness and not Argo CD's own package: github.com/argoproj/argo-cd/v3/util/lua (and
// github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health) at v3.6.1 declare `go 1.27.0`, newer
// than the Go toolchain this project requires, and util/lua pulls in Argo CD's API types and
// with them most of Argo CD's dependency graph. This program reproduces, from a reading of the
// v3.6.1 sources, what those two packages do with a health script:
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
//
// What differs from Argo CD itself: this is not Argo CD's code. The safe os functions are
// gopher-lua's own os.time/os.date (Argo CD's copies differ only in details of os.date with "!"
// and a time argument); the compiled-script cache, custom actions, wildcard overrides and the
// built-in checks of other kinds are left out; objects are read from YAML/JSON files or stdin
// instead of the cluster cache (the values Lua sees are the same).
//
// Usage:
//
//	argolua [-open-libs] test DIR   every case of DIR/health_test.yaml (Argo CD's layout) against
//	                                DIR/health.lua; one JSON line per case; exit 1 if any differs
//	argolua [-open-libs] eval FILE  FILE is a health.lua; objects as JSON on stdin (an array, or
//	                                one per line); one JSON line per object
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
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/yaml"
)

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

type testFile struct {
	Tests []struct {
		InputPath    string        `json:"inputPath"`
		HealthStatus *healthStatus `json:"healthStatus"`
	} `json:"tests"`
}

func readObject(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	object := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &object); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return object, nil
}

func runTests(dir string, openLibs bool, out *json.Encoder) (bool, error) {
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		return false, err
	}
	var tests testFile
	if err := yaml.Unmarshal(data, &tests); err != nil {
		return false, fmt.Errorf("health_test.yaml: %w", err)
	}
	if len(tests.Tests) == 0 {
		return false, errors.New("health_test.yaml has no tests")
	}
	allPass := true
	for _, test := range tests.Tests {
		object, err := readObject(filepath.Join(dir, test.InputPath))
		if err != nil {
			return false, err
		}
		e := evaluate(object, string(script), openLibs)
		e.InputPath = test.InputPath
		e.Expected = test.HealthStatus
		// Argo CD's own test compares the script's result with healthStatus.
		pass := e.Error == "" && reflect.DeepEqual(test.HealthStatus, e.Script)
		e.Pass = &pass
		allPass = allPass && pass
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
		fmt.Fprintln(os.Stderr, "usage: argolua [-open-libs] test DIR | eval HEALTH.lua < objects.json")
		flag.PrintDefaults()
	}
	flag.Parse()
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
