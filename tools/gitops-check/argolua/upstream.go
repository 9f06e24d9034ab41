// argolua upstream-check: is this harness still what the pinned Argo CD release does?
//
// It reads the release's sources from the module zips the go command downloaded (recorded by
// scripts/build-gitops-check.sh as the output of `go mod download -json` for argocdModules at
// argocdVersion; the go command checks them against the checksum database unless configured not
// to, this check against the sums recorded in argocdModules), and reports every difference it
// finds:
//
//   - Argo CD's own built-in health checks (resource_customizations/**/health.lua) on every case
//     of their health_test.yaml, as Argo CD's TestLuaHealthScript runs them (open libraries, the
//     script GetHealthScript finds for the object), must give the expected result through this
//     harness, but for the cases in upstreamAllowList (which must still fail, and exist);
//   - every declaration in upstreamFunctions must still have its recorded fingerprint;
//   - the gopher-lua and gopher-json this binary links must be the versions Argo CD's go.mod
//     requires, and gitops-engine the version of the release.
//
// It prints one line per finding and a JSON summary as its last line; exit 1 if anything differs.
package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
)

type pinnedModule struct {
	Path string
	// Sum is the h1: hash of the module zip at argocdVersion.
	Sum string
}

type fingerprint struct {
	Module string
	File   string
	// Decl is "func NAME", "func TYPE.METHOD", "type NAME", "const NAME" or "var NAME".
	Decl   string
	SHA256 string
}

// upstreamAllowList holds the cases of Argo CD's built-in checks that cannot pass through this
// harness for a reason outside it ("resource_customizations/DIR/INPUT" → the reason). The check
// fails when one of them passes or no longer exists.
var upstreamAllowList = map[string]string{}

// goModRequirements are the modules whose version in Argo CD's go.mod must be the one linked here.
var goModRequirements = []string{"github.com/yuin/gopher-lua", "layeh.com/gopher-json"}

// The go command reports that it cannot use a module that declares a newer Go than its own after
// it downloaded and verified the zip; for reading the sources that error is expected.
const newerGoError = " requires go >= "

type moduleDownload struct {
	Path, Version, Error, Zip, Sum string
}

type upstreamSummary struct {
	ArgocdVersion string            `json:"argocdVersion"`
	Modules       map[string]string `json:"modules"`
	GoMod         map[string]string `json:"goMod"`
	Fingerprints  struct {
		Checked int `json:"checked"`
		Changed int `json:"changed"`
	} `json:"fingerprints"`
	BuiltinChecks struct {
		Directories int `json:"directories"`
		Cases       int `json:"cases"`
		Passed      int `json:"passed"`
		AllowListed int `json:"allowListed"`
	} `json:"builtinChecks"`
	Problems []string `json:"problems"`
}

func upstreamCheck(sourcesPath string, out io.Writer) (bool, error) {
	summary := upstreamSummary{
		ArgocdVersion: argocdVersion,
		Modules:       map[string]string{},
		GoMod:         map[string]string{},
		Problems:      []string{},
	}
	problem := func(format string, args ...interface{}) {
		text := fmt.Sprintf(format, args...)
		summary.Problems = append(summary.Problems, text)
		fmt.Fprintln(out, "PROBLEM: "+text)
	}

	sources, err := openSources(sourcesPath, &summary)
	if err != nil {
		problem("%v", err)
	} else {
		defer sources.close()
		for _, module := range argocdModules {
			if zip, ok := sources.zips[module.Path]; ok {
				fmt.Fprintf(out, "%s@%s: %s (%s)\n", module.Path, argocdVersion, summary.Modules[module.Path], zip)
			}
		}
		for _, text := range sources.problems {
			problem("%s", text)
		}
		// What can be checked with the sources there are.
		checkFingerprints(sources.fs, &summary, problem, out)
		if argo := sources.fs[argoCD]; argo != nil {
			checkGoMod(argo, &summary, problem, out)
			checkBuiltinHealth(argo, &summary, problem, out)
		}
	}

	encoded, err := json.Marshal(summary)
	if err != nil {
		return false, err
	}
	fmt.Fprintln(out, string(encoded))
	return len(summary.Problems) == 0, nil
}

type sourceZips struct {
	zips    map[string]string
	fs      map[string]fs.FS
	closers []io.Closer
	// problems are the modules that could not be opened, and the zips whose sum is not the one
	// recorded in argocdModules.
	problems []string
}

func (s *sourceZips) close() {
	for _, c := range s.closers {
		c.Close()
	}
}

// openSources reads the download record and opens each pinned module's zip that it can, noting
// the ones it cannot and the zips whose h1: sum is not the one in argocdModules.
func openSources(recordPath string, summary *upstreamSummary) (*sourceZips, error) {
	bump := "(when bumping Argo CD: scripts/build-gitops-check.sh downloads the sources of the version in argocdVersion)"
	data, err := os.ReadFile(recordPath)
	if err != nil {
		return nil, fmt.Errorf("the record of Argo CD %s's sources: %w: run scripts/build-gitops-check.sh, which downloads them with the go command", argocdVersion, err)
	}
	downloads := map[string]moduleDownload{}
	decoder := json.NewDecoder(bytes.NewReader(data))
	for {
		var d moduleDownload
		if err := decoder.Decode(&d); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w (expected the output of `go mod download -json`)", recordPath, err)
		}
		downloads[d.Path+"@"+d.Version] = d
	}
	if len(downloads) == 0 {
		return nil, fmt.Errorf("%s is empty: the go command did not run (is Go on PATH?); run scripts/build-gitops-check.sh", recordPath)
	}
	sources := &sourceZips{zips: map[string]string{}, fs: map[string]fs.FS{}}
	note := func(format string, args ...interface{}) {
		sources.problems = append(sources.problems, fmt.Sprintf(format, args...))
	}
	for _, module := range argocdModules {
		d, found := downloads[module.Path+"@"+argocdVersion]
		switch {
		case !found:
			note("%s does not record %s@%s %s", recordPath, module.Path, argocdVersion, bump)
			continue
		case d.Zip == "":
			note("%s@%s could not be downloaded: %s (it needs the Go module proxy once; then the module cache has it)", module.Path, argocdVersion, d.Error)
			continue
		case d.Error != "" && !strings.Contains(d.Error, newerGoError):
			note("%s@%s: %s", module.Path, argocdVersion, d.Error)
			continue
		}
		sum, err := zipSum(d.Zip)
		if err != nil {
			note("%s@%s: %v (run scripts/build-gitops-check.sh again to download it)", module.Path, argocdVersion, err)
			continue
		}
		summary.Modules[module.Path] = sum
		if sum != module.Sum {
			// Not the sources the harness was compared with, but the ones the go command verified
			// for this version: the rest of the check still reads them.
			note("the zip of %s@%s has %s but argolua records %s: these are not the sources the harness was compared with (after a version bump: once the rest of this report is dealt with, record the new sum in argocdModules)", module.Path, argocdVersion, sum, module.Sum)
		}
		reader, err := zip.OpenReader(d.Zip)
		if err != nil {
			note("%s: %v", d.Zip, err)
			continue
		}
		sources.closers = append(sources.closers, reader)
		root, err := fs.Sub(reader, module.Path+"@"+argocdVersion)
		if err != nil {
			note("%s: %v", d.Zip, err)
			continue
		}
		sources.zips[module.Path] = d.Zip
		sources.fs[module.Path] = root
	}
	return sources, nil
}

// zipSum is the h1: hash the go command records for a module zip: the SHA-256 of the lines
// "<SHA-256 of the file, hex>  <name>\n" over the zip's files sorted by name, base64.
func zipSum(zipPath string) (string, error) {
	reader, err := zip.OpenReader(zipPath)
	if err != nil {
		return "", err
	}
	defer reader.Close()
	files := append([]*zip.File(nil), reader.File...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	summary := sha256.New()
	for _, file := range files {
		if strings.Contains(file.Name, "\n") {
			return "", fmt.Errorf("%s: a file name with a newline", zipPath)
		}
		content, err := file.Open()
		if err != nil {
			return "", err
		}
		hash := sha256.New()
		_, err = io.Copy(hash, content)
		content.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %s: %w", zipPath, file.Name, err)
		}
		fmt.Fprintf(summary, "%x  %s\n", hash.Sum(nil), file.Name)
	}
	return "h1:" + base64.StdEncoding.EncodeToString(summary.Sum(nil)), nil
}

// goModVersions reads the require and replace directives of a go.mod for the given modules.
func goModVersions(goMod []byte, modules []string) (required, replaced map[string]string) {
	required, replaced = map[string]string{}, map[string]string{}
	wanted := map[string]bool{}
	for _, m := range modules {
		wanted[m] = true
	}
	block := ""
	for _, line := range strings.Split(string(goMod), "\n") {
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case block != "" && fields[0] == ")":
			block = ""
		case block != "":
			recordDirective(block, fields, wanted, required, replaced)
		case len(fields) == 2 && fields[1] == "(":
			block = fields[0]
		default:
			recordDirective(fields[0], fields[1:], wanted, required, replaced)
		}
	}
	return required, replaced
}

func recordDirective(directive string, fields []string, wanted map[string]bool, required, replaced map[string]string) {
	if len(fields) < 2 || !wanted[fields[0]] {
		return
	}
	switch directive {
	case "require":
		required[fields[0]] = fields[1]
	case "replace":
		replaced[fields[0]] = strings.Join(fields[1:], " ")
	}
}

func checkGoMod(argo fs.FS, summary *upstreamSummary, problem func(string, ...interface{}), out io.Writer) {
	goMod, err := fs.ReadFile(argo, "go.mod")
	if err != nil {
		problem("Argo CD's go.mod: %v", err)
		return
	}
	modules := append([]string{gitopsEngine}, goModRequirements...)
	required, replaced := goModVersions(goMod, modules)
	if v := required[gitopsEngine]; v != argocdVersion {
		problem("Argo CD %s's go.mod requires %s %q, not the release's own version: check which gitops-engine it builds with, and download that one", argocdVersion, gitopsEngine, v)
	}
	linked := map[string]string{}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Replace != nil {
				linked[dep.Path] = "replaced by " + dep.Replace.Path + " " + dep.Replace.Version
			} else {
				linked[dep.Path] = dep.Version
			}
		}
	}
	for _, module := range goModRequirements {
		summary.GoMod[module] = required[module]
		switch {
		case required[module] == "":
			problem("Argo CD %s's go.mod does not require %s: re-read how util/lua runs scripts", argocdVersion, module)
		case replaced[module] != "":
			problem("Argo CD %s's go.mod replaces %s with %s: argolua must link the same code", argocdVersion, module, replaced[module])
		case linked[module] != required[module]:
			problem("argolua links %s %q but Argo CD %s's go.mod requires %s: set that version in tools/gitops-check/argolua/go.mod (go get %s@%s), then re-run the check", module, linked[module], argocdVersion, required[module], module, required[module])
		default:
			fmt.Fprintf(out, "go.mod: %s %s, as argolua links\n", module, required[module])
		}
	}
}

// declFingerprint is the SHA-256 of the declaration's syntax tree: its structure, names, literals
// and operators, not its comments, positions or layout — what changes when its code changes, not
// when it is reformatted or re-commented.
func declFingerprint(src []byte, decl string) (string, error) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "", src, parser.SkipObjectResolution)
	if err != nil {
		return "", err
	}
	var node ast.Node
	for _, d := range file.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if "func "+funcName(d) == decl {
				node = d
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch spec := spec.(type) {
				case *ast.TypeSpec:
					if d.Tok.String()+" "+spec.Name.Name == decl {
						node = spec
					}
				case *ast.ValueSpec:
					for _, name := range spec.Names {
						if d.Tok.String()+" "+name.Name == decl {
							node = spec
						}
					}
				}
			}
		}
	}
	if node == nil {
		return "", errNoDecl
	}
	hash := sha256.New()
	writeTree(hash, reflect.ValueOf(node))
	return hex.EncodeToString(hash.Sum(nil)), nil
}

var (
	posType          = reflect.TypeOf(token.NoPos)
	commentGroupType = reflect.TypeOf(&ast.CommentGroup{})
	objectType       = reflect.TypeOf(&ast.Object{})
)

// writeTree writes a syntax tree as text: every node's type and fields, but positions, comments
// and resolved objects.
func writeTree(w io.Writer, v reflect.Value) {
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			io.WriteString(w, "nil ")
			return
		}
		writeTree(w, v.Elem())
	case reflect.Struct:
		fmt.Fprintf(w, "%s{", v.Type().Name())
		for i := 0; i < v.NumField(); i++ {
			switch v.Field(i).Type() {
			case posType, commentGroupType, objectType:
				continue
			}
			fmt.Fprintf(w, "%s:", v.Type().Field(i).Name)
			writeTree(w, v.Field(i))
		}
		io.WriteString(w, "} ")
	case reflect.Slice:
		fmt.Fprintf(w, "[%d ", v.Len())
		for i := 0; i < v.Len(); i++ {
			writeTree(w, v.Index(i))
		}
		io.WriteString(w, "] ")
	default:
		fmt.Fprintf(w, "%q ", fmt.Sprint(v.Interface()))
	}
}

var errNoDecl = errors.New("no such declaration")

func funcName(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return d.Name.Name
	}
	typ := d.Recv.List[0].Type
	for {
		switch t := typ.(type) {
		case *ast.StarExpr:
			typ = t.X
			continue
		case *ast.IndexExpr:
			typ = t.X
			continue
		case *ast.IndexListExpr:
			typ = t.X
			continue
		case *ast.Ident:
			return t.Name + "." + d.Name.Name
		}
		return "?." + d.Name.Name
	}
}

func checkFingerprints(sources map[string]fs.FS, summary *upstreamSummary, problem func(string, ...interface{}), out io.Writer) {
	for _, f := range upstreamFunctions {
		if sources[f.Module] == nil {
			continue
		}
		summary.Fingerprints.Checked++
		src, err := fs.ReadFile(sources[f.Module], f.File)
		var sum string
		if err == nil {
			sum, err = declFingerprint(src, f.Decl)
		}
		where := fmt.Sprintf("%s (%s in %s)", f.Decl, f.File, f.Module)
		switch {
		case err != nil:
			summary.Fingerprints.Changed++
			problem("%s: %v in Argo CD %s: find where its work moved, re-read it, update argolua and upstreamFunctions", where, err, argocdVersion)
		case sum != f.SHA256:
			summary.Fingerprints.Changed++
			problem("%s changed in Argo CD %s: re-read it, update argolua, then update the fingerprint in upstreamFunctions to %s", where, argocdVersion, sum)
		}
	}
	fmt.Fprintf(out, "fingerprints: %d of %d unchanged", summary.Fingerprints.Checked-summary.Fingerprints.Changed, summary.Fingerprints.Checked)
	if missing := len(upstreamFunctions) - summary.Fingerprints.Checked; missing > 0 {
		fmt.Fprintf(out, " (%d not checked: no sources)", missing)
	}
	fmt.Fprintln(out)
}

// healthScriptFor is the script Argo CD's GetHealthScript finds among the built-in checks for an
// object: its group/kind directory, else the first (sorted) directory with "_" in its path whose
// pattern ("_" read as "*") matches.
func healthScriptFor(customizations fs.FS, object map[string]interface{}, wildcards []string) (string, error) {
	apiVersion, _ := object["apiVersion"].(string)
	kind, _ := object["kind"].(string)
	key := kind
	if i := strings.LastIndex(apiVersion, "/"); i >= 0 {
		key = apiVersion[:i] + "/" + kind
	}
	if _, err := fs.Stat(customizations, path.Join(key, "health.lua")); err == nil {
		return key, nil
	}
	for _, dir := range wildcards {
		if ok, _ := path.Match(strings.ReplaceAll(dir, "_", "*"), key); ok {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no built-in health check for %q", key)
}

func checkBuiltinHealth(argo fs.FS, summary *upstreamSummary, problem func(string, ...interface{}), out io.Writer) {
	const root = "resource_customizations"
	customizations, err := fs.Sub(argo, root)
	if err != nil {
		problem("%s: %v", root, err)
		return
	}
	var dirs, wildcards []string
	err = fs.WalkDir(customizations, ".", func(name string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !entry.IsDir() && entry.Name() == "health.lua" {
			dir := path.Dir(name)
			dirs = append(dirs, dir)
			if strings.Contains(dir, "_") {
				wildcards = append(wildcards, dir)
			}
		}
		return nil
	})
	if err != nil {
		problem("%s: %v", root, err)
		return
	}
	sort.Strings(dirs)
	sort.Strings(wildcards)
	if len(dirs) == 0 {
		problem("Argo CD %s has no %s/**/health.lua: where did its built-in checks go?", argocdVersion, root)
		return
	}

	checks := &summary.BuiltinChecks
	seen := map[string]bool{}
	var failures []string
	for _, dir := range dirs {
		checks.Directories++
		tests, err := readTests(customizations, dir)
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s/%s: %v", root, dir, err))
			continue
		}
		for _, test := range tests.Tests {
			checks.Cases++
			id := path.Join(root, dir, test.InputPath)
			seen[id] = true
			reason, allowed := upstreamAllowList[id]
			result, err := runBuiltinCase(customizations, dir, test, wildcards)
			if err != nil {
				result = fmt.Sprintf("%v", err)
			}
			switch {
			case result == "" && allowed:
				problem("%s passes now: remove it from upstreamAllowList (%q)", id, reason)
			case result == "":
				checks.Passed++
			case allowed:
				checks.AllowListed++
				fmt.Fprintf(out, "allow-listed: %s: %s (%s)\n", id, reason, result)
			default:
				failures = append(failures, id+": "+result)
			}
		}
	}
	for id := range upstreamAllowList {
		if !seen[id] {
			problem("%s is in upstreamAllowList but is no case of Argo CD %s: remove it", id, argocdVersion)
		}
	}
	for _, failure := range failures {
		problem("Argo CD %s's own case %s (through argolua -open-libs, as its TestLuaHealthScript runs it): find what Argo CD does that argolua does not", argocdVersion, failure)
	}
	fmt.Fprintf(out, "built-in health checks: %d directories, %d cases, %d pass, %d allow-listed\n",
		checks.Directories, checks.Cases, checks.Passed, checks.AllowListed)
}

// runBuiltinCase runs one case of a built-in check: "" when the result is the expected one, else
// what differs.
func runBuiltinCase(customizations fs.FS, dir string, test testCase, wildcards []string) (string, error) {
	object, err := readObject(customizations, path.Join(dir, test.InputPath))
	if err != nil {
		return "", err
	}
	scriptDir, err := healthScriptFor(customizations, object, wildcards)
	if err != nil {
		return "", err
	}
	script, err := fs.ReadFile(customizations, path.Join(scriptDir, "health.lua"))
	if err != nil {
		return "", err
	}
	e, err := runCase(customizations, dir, test, string(script), true)
	if err != nil {
		return "", err
	}
	if *e.Pass {
		return "", nil
	}
	expected, _ := json.Marshal(e.Expected)
	got, _ := json.Marshal(e.Script)
	text := fmt.Sprintf("expected %s, got %s", expected, got)
	if e.Error != "" {
		text += " with error " + e.Error
	}
	if scriptDir != dir {
		text += " (script of " + scriptDir + ")"
	}
	return text, nil
}
