// Package credentialstest drives ecs-sim's STS and metadata server with the official Go
// credentials library (github.com/aliyun/credentials-go) and signs ECS calls with the obtained
// temporary credentials through the official Go ECS SDK.
//
// Each test starts its own simulator: $ECS_SIM_BIN, else target/debug/ecs-sim of the repository
// (cargo build -p ecs-sim). How the library is pointed at it:
//   - STS: WithStsEndpoint("127.0.0.1:PORT"). The library always calls STS over https; the
//     simulator serves TLS on the same port and writes its CA (--tls-ca-out); the test adds it to
//     the roots of http.DefaultTransport, which the library clones for every request.
//   - Metadata: the library's host is fixed (http://100.100.100.200); HttpOptions.Proxy sends its
//     requests through the simulator as an HTTP proxy (absolute-form request lines).
//   - Credentials URI: WithUrl("http://127.0.0.1:PORT/credentials-uri").
package credentialstest

import (
	"bufio"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	ecs "github.com/alibabacloud-go/ecs-20140526/v7/client"
	"github.com/alibabacloud-go/tea/tea"
	credentials "github.com/aliyun/credentials-go/credentials"
	"github.com/aliyun/credentials-go/credentials/providers"
)

const (
	accountA     = "1111111111111111"
	accountB     = "2222222222222222"
	operator     = "acs:ram::" + accountB + ":role/operator"
	rrsa         = "acs:ram::" + accountB + ":role/rrsa"
	instanceRole = "EcsInstanceRole"
	provider     = "acs:ram::" + accountB + ":oidc-provider/ack-rrsa-test"
	issuer       = "https://oidc.test.invalid/clusters/c1"
	audience     = "sts.aliyuncs.com"
	subject      = "system:serviceaccount:ns1:controller"
	region       = "cn-hangzhou"
	keyID        = "go-test-key"
)

// What keys of the role account (B) see; alice's own keys see i-ownedbyalice instead.
var roleAccountView = []string{"i-ownedbyacctb", "i-ownedbybob01", "i-sharedshared"}

// The roots the library's https calls trust: every started simulator adds its CA.
var (
	roots     = x509.NewCertPool()
	rootsOnce sync.Once
)

func trustRoots() {
	rootsOnce.Do(func() {
		transport := http.DefaultTransport.(*http.Transport)
		transport.TLSClientConfig = &tls.Config{RootCAs: roots}
		// No proxy from the environment may catch the loopback STS calls.
		transport.Proxy = nil
	})
}

// The OIDC issuer's signing key, made once per run.
var (
	issuerKey     *rsa.PrivateKey
	issuerKeyOnce sync.Once
)

func signingKey(t *testing.T) *rsa.PrivateKey {
	issuerKeyOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		issuerKey = key
	})
	return issuerKey
}

type sim struct {
	endpoint string // http://127.0.0.1:PORT
	hostPort string
}

func simBinary(t *testing.T) string {
	if path := os.Getenv("ECS_SIM_BIN"); path != "" {
		return path
	}
	path, err := filepath.Abs(filepath.Join("..", "..", "..", "target", "debug", "ecs-sim"))
	if err != nil {
		t.Fatalf("cannot locate the ecs-sim binary: %v", err)
	}
	return path
}

// startSim starts a simulator with roles, an OIDC provider (trusting signingKey as a JWKS) and a
// metadata role, plus extra flags; it is killed when the test ends. Fails the test clearly when
// the simulator cannot start.
func startSim(t *testing.T, extra ...string) *sim {
	t.Helper()
	trustRoots()
	dir := t.TempDir()
	key := signingKey(t)
	jwks := map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": keyID,
		"n": b64(key.PublicKey.N.Bytes()),
		"e": b64(big.NewInt(int64(key.PublicKey.E)).Bytes()),
	}}}
	writeJSON(t, filepath.Join(dir, "jwks.json"), jwks)
	config := map[string]any{
		"accounts": []map[string]string{
			{"accessKeyId": "alice", "accessKeySecret": "alice-secret", "accountId": accountA},
			{"accessKeyId": "bob", "accessKeySecret": "bob-secret", "accountId": accountB},
		},
		"roles": []map[string]any{
			{"arn": operator, "trustedAccountIds": []string{accountA}},
			{"arn": rrsa, "trustedOidcProviders": []map[string]any{
				{"providerArn": provider, "subjects": []string{subject}},
			}},
			{"arn": "acs:ram::" + accountB + ":role/" + instanceRole},
		},
		"oidcProviders": []map[string]any{{
			"arn": provider, "issuerUrl": issuer, "clientIds": []string{audience},
			"jwksFile": "jwks.json",
		}},
		"metadata": map[string]string{"roleArn": "acs:ram::" + accountB + ":role/" + instanceRole},
	}
	accounts := filepath.Join(dir, "accounts.json")
	writeJSON(t, accounts, config)
	ca := filepath.Join(dir, "ca.pem")

	binary := simBinary(t)
	args := append([]string{"--listen", "127.0.0.1:0", "--accounts-file", accounts,
		"--tls-ca-out", ca}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("cannot start ecs-sim: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start ecs-sim %s: %v (build it first: cargo build -p ecs-sim, or set ECS_SIM_BIN)", binary, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(20 * time.Second):
		t.Fatalf("ecs-sim %s did not report ready within 20 s", binary)
	}
	const prefix = "ecs-sim listening on "
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("ecs-sim %s did not start: first line %q", binary, line)
	}
	endpoint := strings.TrimSpace(strings.TrimPrefix(line, prefix))
	pem, err := os.ReadFile(ca)
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("cannot read the simulator's CA %s: %v", ca, err)
	}
	s := &sim{endpoint: endpoint, hostPort: strings.TrimPrefix(endpoint, "http://")}
	s.admin(t, "POST", "instances", `[
		{"instanceId": "i-ownedbyalice", "regionId": "cn-hangzhou", "owner": "alice"},
		{"instanceId": "i-ownedbybob01", "regionId": "cn-hangzhou", "owner": "bob"},
		{"instanceId": "i-ownedbyacctb", "regionId": "cn-hangzhou", "owner": "`+accountB+`"},
		{"instanceId": "i-sharedshared", "regionId": "cn-hangzhou"}]`)
	return s
}

func writeJSON(t *testing.T, path string, value any) {
	data, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func b64(data []byte) string {
	return base64.RawURLEncoding.EncodeToString(data)
}

// admin calls the simulator's admin API and decodes the JSON answer.
func (s *sim) admin(t *testing.T, method, path, body string) any {
	t.Helper()
	request, err := http.NewRequest(method, s.endpoint+"/_sim/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	response, err := client.Do(request)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer response.Body.Close()
	var value any
	if err := json.NewDecoder(response.Body).Decode(&value); err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	if response.StatusCode != 200 {
		t.Fatalf("admin %s %s answered %d: %v", method, path, response.StatusCode, value)
	}
	return value
}

func (s *sim) calls(t *testing.T, action string) []map[string]any {
	var calls []map[string]any
	for _, call := range s.admin(t, "GET", "calls?action="+action, "").([]any) {
		calls = append(calls, call.(map[string]any))
	}
	return calls
}

// oidcToken signs an RS256 token as RRSA's kube-apiserver would issue it.
func oidcToken(t *testing.T, key *rsa.PrivateKey, overrides map[string]any) string {
	now := time.Now().Unix()
	claims := map[string]any{"iss": issuer, "sub": subject, "aud": []string{audience},
		"iat": now, "exp": now + 600}
	for k, v := range overrides {
		claims[k] = v
	}
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": keyID})
	payload, _ := json.Marshal(claims)
	input := b64(header) + "." + b64(payload)
	digest := sha256.Sum256([]byte(input))
	signature, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(signature)
}

func ecsClient(t *testing.T, s *sim, name string, provider providers.CredentialsProvider, algorithm string) *ecs.Client {
	config := &openapi.Config{
		Credential: credentials.FromCredentialsProvider(name, provider),
		Endpoint:   tea.String(s.hostPort),
		Protocol:   tea.String("http"),
		RegionId:   tea.String(region),
	}
	if algorithm != "" {
		config.SignatureAlgorithm = tea.String(algorithm)
	}
	client, err := ecs.NewClient(config)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func visibleIDs(client *ecs.Client) ([]string, error) {
	response, err := client.DescribeInstances(&ecs.DescribeInstancesRequest{RegionId: tea.String(region)})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, instance := range response.Body.Instances.Instance {
		ids = append(ids, tea.StringValue(instance.InstanceId))
	}
	sort.Strings(ids)
	return ids, nil
}

func expectView(t *testing.T, client *ecs.Client, want []string) {
	t.Helper()
	ids, err := visibleIDs(client)
	if err != nil {
		t.Fatalf("DescribeInstances with temporary credentials: %v", err)
	}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("DescribeInstances saw %v, want %v", ids, want)
	}
}

func ramRoleArn(t *testing.T, s *sim, key, secret string, duration int) *providers.RAMRoleARNCredentialsProvider {
	t.Helper()
	p, err := providers.NewRAMRoleARNCredentialsProviderBuilder().
		WithAccessKeyId(key).
		WithAccessKeySecret(secret).
		WithRoleArn(operator).
		WithDurationSeconds(duration).
		WithStsEndpoint(s.hostPort).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRAMRoleARNCredentialsSignECSCalls(t *testing.T) {
	s := startSim(t)
	p := ramRoleArn(t, s, "alice", "alice-secret", 1200)
	credential, err := p.GetCredentials()
	if err != nil {
		t.Fatalf("AssumeRole through credentials-go: %v", err)
	}
	if !strings.HasPrefix(credential.AccessKeyId, "STS.") || credential.SecurityToken == "" {
		t.Fatalf("unexpected credentials %q", credential.AccessKeyId)
	}
	if credential.ProviderName != "ram_role_arn/static_ak" {
		t.Fatalf("provider name %q", credential.ProviderName)
	}
	// The library's request: POST, signature parameters in the query, the rest in a form.
	calls := s.calls(t, "AssumeRole")
	if len(calls) != 1 || calls[0]["httpStatus"].(float64) != 200 ||
		calls[0]["signatureMethod"] != "HMAC-SHA1" || calls[0]["accessKeyId"] != "alice" {
		t.Fatalf("call log: %v", calls)
	}
	if calls[0]["params"].(map[string]any)["DurationSeconds"] != "1200" {
		t.Fatalf("call log params: %v", calls[0]["params"])
	}
	for _, algorithm := range []string{"", "v2"} {
		expectView(t, ecsClient(t, s, "ram_role_arn", p, algorithm), roleAccountView)
	}

	// A caller the role does not trust: the library reports the simulator's refusal.
	_, err = ramRoleArn(t, s, "bob", "bob-secret", 900).GetCredentials()
	if err == nil || !strings.Contains(err.Error(), "NoPermission") {
		t.Fatalf("untrusted AssumeRole: %v", err)
	}
}

func TestOIDCRoleARNCredentials(t *testing.T) {
	s := startSim(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	build := func(token string) *providers.OIDCCredentialsProvider {
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := providers.NewOIDCCredentialsProviderBuilder().
			WithRoleArn(rrsa).
			WithOIDCProviderARN(provider).
			WithOIDCTokenFilePath(tokenFile).
			WithRoleSessionName("rrsa-go").
			WithSTSEndpoint(s.hostPort).
			Build()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := build(oidcToken(t, signingKey(t), nil))
	credential, err := p.GetCredentials()
	if err != nil {
		t.Fatalf("AssumeRoleWithOIDC through credentials-go: %v", err)
	}
	if !strings.HasPrefix(credential.AccessKeyId, "STS.") || credential.ProviderName != "oidc_role_arn" {
		t.Fatalf("unexpected credentials %q from %q", credential.AccessKeyId, credential.ProviderName)
	}
	expectView(t, ecsClient(t, s, "oidc_role_arn", p, ""), roleAccountView)
	calls := s.calls(t, "AssumeRoleWithOIDC")
	if len(calls) != 1 || calls[0]["accessKeyId"] != nil ||
		calls[0]["params"].(map[string]any)["OIDCToken"] != "<redacted>" {
		t.Fatalf("call log: %v", calls)
	}

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Unix() - 5
	for _, c := range []struct {
		token string
		code  string
	}{
		{oidcToken(t, signingKey(t), map[string]any{"exp": past}), "AuthenticationFail.OIDCToken.Expired"},
		{oidcToken(t, signingKey(t), map[string]any{"aud": "other"}), "AuthenticationFail.OIDCToken.AudienceNotMatch"},
		{oidcToken(t, signingKey(t), map[string]any{"iss": "https://other.invalid"}), "AuthenticationFail.OIDCToken.IssuerNotMatch"},
		{oidcToken(t, signingKey(t), map[string]any{"sub": "system:serviceaccount:x:y"}), "AuthenticationFail.NoPermission"},
		{oidcToken(t, other, nil), "AuthenticationFail.OIDCToken.InvalidSignature"},
	} {
		_, err := build(c.token).GetCredentials()
		if err == nil || !strings.Contains(err.Error(), c.code) {
			t.Fatalf("want %s, got %v", c.code, err)
		}
	}
}

func metadataProvider(t *testing.T, s *sim, disableIMDSv1 bool) *providers.ECSRAMRoleCredentialsProvider {
	p, err := providers.NewECSRAMRoleCredentialsProviderBuilder().
		WithDisableIMDSv1(disableIMDSv1).
		WithHttpOptions(&providers.HttpOptions{Proxy: s.endpoint}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestECSRAMRoleCredentialsFromTheMetadataServer(t *testing.T) {
	for _, hardened := range []bool{false, true} {
		t.Run(fmt.Sprintf("hardened=%v", hardened), func(t *testing.T) {
			var s *sim
			if hardened {
				s = startSim(t, "--metadata-require-token")
			} else {
				s = startSim(t)
			}
			p := metadataProvider(t, s, hardened)
			credential, err := p.GetCredentials()
			if err != nil {
				t.Fatalf("credentials from the metadata server: %v", err)
			}
			if !strings.HasPrefix(credential.AccessKeyId, "STS.") || credential.ProviderName != "ecs_ram_role" {
				t.Fatalf("unexpected credentials %q", credential.AccessKeyId)
			}
			expectView(t, ecsClient(t, s, "ecs_ram_role", p, ""), roleAccountView)
			// The token handshake: every GET carried the token the PUT returned.
			gets := 0
			for _, call := range s.admin(t, "GET", "calls", "").([]any) {
				c := call.(map[string]any)
				params := c["params"].(map[string]any)
				if c["product"] != "metadata" {
					continue
				}
				if c["httpStatus"].(float64) != 200 {
					t.Fatalf("metadata call refused: %v", c)
				}
				if params["method"] == "GET" {
					gets++
					if params["tokenPresent"] != "true" {
						t.Fatalf("metadata GET without the token: %v", c)
					}
				}
			}
			if gets != 2 {
				t.Fatalf("want the role listing and the credentials GET, got %d GETs", gets)
			}
		})
	}
}

func TestCredentialsURI(t *testing.T) {
	s := startSim(t)
	p, err := providers.NewURLCredentialsProviderBuilder().
		WithUrl(s.endpoint + "/credentials-uri").
		Build()
	if err != nil {
		t.Fatal(err)
	}
	credential, err := p.GetCredentials()
	if err != nil {
		t.Fatalf("credentials URI: %v", err)
	}
	if !strings.HasPrefix(credential.AccessKeyId, "STS.") {
		t.Fatalf("unexpected credentials %q", credential.AccessKeyId)
	}
	expectView(t, ecsClient(t, s, "credentials_uri", p, "v2"), roleAccountView)
}

type fixed struct{ credentials *providers.Credentials }

func (f fixed) GetCredentials() (*providers.Credentials, error) { return f.credentials, nil }
func (f fixed) GetProviderName() string                         { return "fixed" }

func TestExpiredCredentialsAreRefused(t *testing.T) {
	s := startSim(t, "--sts-max-lifetime-secs", "2")
	p := ramRoleArn(t, s, "alice", "alice-secret", 3600)
	first, err := p.GetCredentials()
	if err != nil {
		t.Fatal(err)
	}
	client := ecsClient(t, s, "fixed", fixed{first}, "")
	expectView(t, client, roleAccountView)
	time.Sleep(3 * time.Second)
	_, err = visibleIDs(client)
	var sdkError *tea.SDKError
	if !errors.As(err, &sdkError) || tea.StringValue(sdkError.Code) != "InvalidSecurityToken.Expired" ||
		tea.IntValue(sdkError.StatusCode) != 400 {
		t.Fatalf("want InvalidSecurityToken.Expired (400), got %v", err)
	}
	// The provider sees its credentials are about to expire and assumes the role again.
	expectView(t, ecsClient(t, s, "ram_role_arn", p, ""), roleAccountView)
	again, err := p.GetCredentials()
	if err != nil || again.AccessKeyId == first.AccessKeyId {
		t.Fatalf("no refresh: %v %q", err, again.AccessKeyId)
	}
}
