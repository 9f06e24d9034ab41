//! Response bodies in the two wire formats. A body is built once as an ordered [`Node`] tree and
//! rendered as JSON or XML, so both formats always carry the same fields in the same order.
//!
//! The tree follows ECS's XML-derived JSON shape: a list is a field whose value is a
//! [`Node::List`]; in XML every item becomes an element named after that field
//! (`"Instances": {"Instance": [..]}` ↔ `<Instances><Instance>..</Instance>..</Instances>`).

use quick_xml::escape::escape;

use crate::errors::EcsError;

#[derive(Debug, Clone)]
pub enum Node {
    Str(String),
    Int(i64),
    Bool(bool),
    Object(Vec<(&'static str, Node)>),
    List(Vec<Node>),
}

impl From<&str> for Node {
    fn from(s: &str) -> Self {
        Node::Str(s.to_owned())
    }
}
impl From<String> for Node {
    fn from(s: String) -> Self {
        Node::Str(s)
    }
}
impl From<i64> for Node {
    fn from(n: i64) -> Self {
        Node::Int(n)
    }
}
impl From<bool> for Node {
    fn from(b: bool) -> Self {
        Node::Bool(b)
    }
}

/// The response format a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json;charset=utf-8",
            Format::Xml => "text/xml;charset=utf-8",
        }
    }
}

/// A success body: `RequestId` first, then the action's fields.
pub fn render_success(
    format: Format,
    action: &str,
    request_id: &str,
    mut fields: Vec<(&'static str, Node)>,
) -> String {
    fields.insert(0, ("RequestId", Node::Str(request_id.to_owned())));
    render(format, &format!("{action}Response"), &Node::Object(fields))
}

/// The error body: `RequestId`, `HostId`, `Code`, `Message`, `Recommend`
/// (docs/ecs-reference.md §5); `product` names the API in `Recommend` (`Ecs`, `Sts`).
pub fn render_error(
    format: Format,
    error: &EcsError,
    request_id: &str,
    host_id: &str,
    product: &str,
) -> String {
    let recommend = format!(
        "https://api.aliyun.com/troubleshoot?q={}&product={product}&requestId={request_id}",
        error.code
    );
    let body = Node::Object(vec![
        ("RequestId", request_id.into()),
        ("HostId", host_id.into()),
        ("Code", error.code.as_str().into()),
        ("Message", error.message.as_str().into()),
        ("Recommend", recommend.into()),
    ]);
    render(format, "Error", &body)
}

fn render(format: Format, root: &str, body: &Node) -> String {
    let mut out = String::new();
    match format {
        Format::Json => write_json(&mut out, body),
        Format::Xml => {
            out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            write_xml_element(&mut out, root, body);
        }
    }
    out
}

fn write_json(out: &mut String, node: &Node) {
    match node {
        Node::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string serialises")),
        Node::Int(n) => out.push_str(&n.to_string()),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Object(fields) => {
            out.push('{');
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(name);
                out.push_str("\":");
                write_json(out, value);
            }
            out.push('}');
        }
        Node::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
    }
}

fn write_xml_element(out: &mut String, name: &str, node: &Node) {
    if let Node::List(items) = node {
        for item in items {
            write_xml_element(out, name, item);
        }
        return;
    }
    out.push('<');
    out.push_str(name);
    out.push('>');
    match node {
        Node::Str(s) => out.push_str(&escape(s.as_str())),
        Node::Int(n) => out.push_str(&n.to_string()),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Object(fields) => {
            for (child, value) in fields {
                write_xml_element(out, child, value);
            }
        }
        Node::List(_) => unreachable!("lists are expanded above"),
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(&'static str, Node)> {
        vec![
            ("TotalCount", 2.into()),
            (
                "Instances",
                Node::Object(vec![(
                    "Instance",
                    Node::List(vec![
                        Node::Object(vec![("InstanceId", "i-1".into()), ("Flag", true.into())]),
                        Node::Object(vec![("InstanceId", "i-<2>".into()), ("Flag", false.into())]),
                    ]),
                )]),
            ),
        ]
    }

    #[test]
    fn json_keeps_order_and_wrappers() {
        let body = render_success(Format::Json, "DescribeInstances", "R1", sample());
        assert_eq!(
            body,
            r#"{"RequestId":"R1","TotalCount":2,"Instances":{"Instance":[{"InstanceId":"i-1","Flag":true},{"InstanceId":"i-<2>","Flag":false}]}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["Instances"]["Instance"][1]["InstanceId"], "i-<2>");
    }

    #[test]
    fn xml_repeats_list_items_and_escapes() {
        let body = render_success(Format::Xml, "DescribeInstances", "R1", sample());
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeInstancesResponse><RequestId>R1</RequestId><TotalCount>2</TotalCount><Instances><Instance><InstanceId>i-1</InstanceId><Flag>true</Flag></Instance><Instance><InstanceId>i-&lt;2&gt;</InstanceId><Flag>false</Flag></Instance></Instances></DescribeInstancesResponse>"
        );
    }

    #[test]
    fn error_shape() {
        let body = render_error(
            Format::Json,
            &EcsError::instance_not_found(),
            "R2",
            "127.0.0.1:9",
            "Ecs",
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["Code"], "InvalidInstanceId.NotFound");
        assert_eq!(parsed["HostId"], "127.0.0.1:9");
        assert_eq!(
            parsed["Recommend"],
            "https://api.aliyun.com/troubleshoot?q=InvalidInstanceId.NotFound&product=Ecs&requestId=R2"
        );
        let xml = render_error(
            Format::Xml,
            &EcsError::instance_not_found(),
            "R2",
            "h",
            "Ecs",
        );
        assert!(xml.contains("<Error><RequestId>R2</RequestId><HostId>h</HostId><Code>InvalidInstanceId.NotFound</Code>"));
    }
}
