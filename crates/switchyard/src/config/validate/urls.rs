//! Where a provider's `base_url` may point: never with credentials in it, and
//! at a link-local (cloud metadata) or private address only when the provider
//! sets `allow_private_networks`. The check is offline: a name is judged as
//! written, never resolved.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::Uri;

use super::Validator;

/// The network a host is on, as far as its spelling tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    /// A public address, or a name that is not known to be anything else.
    Public,
    /// This host: 127.0.0.0/8, `::1`, the unspecified address, `localhost`.
    Loopback,
    /// A private network: 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// Link-local (169.254/16, fe80::/10) or a cloud's instance metadata
    /// service, where the instance's own credentials are handed out.
    Metadata,
}

/// AWS's instance metadata service over IPv6.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Alibaba Cloud's instance metadata service.
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

/// Names of cloud instance metadata services.
const METADATA_NAMES: [&str; 2] = ["metadata.google.internal", "instance-data.ec2.internal"];

impl Validator<'_> {
    /// Checks what provider `name`'s `base_url` (`url`, parsed as `uri`)
    /// points at; false when that is an error.
    pub(super) fn base_url_target(
        &mut self,
        name: &str,
        url: &str,
        uri: &Uri,
        allow_private_networks: bool,
    ) -> bool {
        let path = ["providers", name, "base_url"];
        let Some(authority) = uri.authority() else {
            return true;
        };
        if authority.as_str().contains('@') {
            self.error(
                &path,
                format!(
                    "provider `{name}`: `base_url` `{}` has credentials in it; move them into `api_key` (the URL is logged and shown in /admin)",
                    redacted(url)
                ),
            );
            return false;
        }
        if allow_private_networks {
            return true;
        }
        let host = authority.host();
        match network(host) {
            Network::Public | Network::Loopback => true,
            Network::Private => {
                self.warn(
                    &path,
                    format!(
                        "provider `{name}`: `base_url` points at `{host}`, on a private network; set `allow_private_networks: true` if that is meant"
                    ),
                );
                true
            }
            Network::Metadata => {
                self.error(
                    &path,
                    format!(
                        "provider `{name}`: `base_url` points at `{host}`, a link-local or cloud metadata address where an instance's credentials are served; set `allow_private_networks: true` if that is really meant"
                    ),
                );
                false
            }
        }
    }
}

/// `url` with its user info, if any, replaced by `***`; works on text that
/// does not parse as a URL too.
pub(super) fn redacted(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => Cow::Owned(format!("{scheme}://***{}", &rest[at..])),
        None => Cow::Borrowed(url),
    }
}

/// The network of `host` as an authority spells it (an IPv6 address in
/// brackets).
fn network(host: &str) -> Network {
    let host = host.strip_suffix('.').unwrap_or(host);
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        // The zone of a scoped address (`fe80::1%25eth0`) does not change its network.
        let address = v6.split_once('%').map_or(v6, |(address, _)| address);
        return address
            .parse::<Ipv6Addr>()
            .map_or(Network::Public, |ip| ip_network(IpAddr::V6(ip)));
    }
    if let Some(ip) = ipv4(host) {
        return ip_network(IpAddr::V4(ip));
    }
    let name = host.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        Network::Loopback
    } else if METADATA_NAMES.contains(&name.as_str()) {
        Network::Metadata
    } else {
        Network::Public
    }
}

/// The network of an IP address; an IPv4-mapped IPv6 one counts as its IPv4 address.
fn ip_network(ip: IpAddr) -> Network {
    match ip {
        IpAddr::V4(ip) => {
            if ip.is_link_local() || ip == ALIBABA_METADATA {
                Network::Metadata
            } else if ip.is_loopback() || ip.is_unspecified() {
                Network::Loopback
            } else if ip.is_private() {
                Network::Private
            } else {
                Network::Public
            }
        }
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                ip_network(IpAddr::V4(v4))
            } else if ip.is_unicast_link_local() || ip == AWS_METADATA_V6 {
                Network::Metadata
            } else if ip.is_loopback() || ip.is_unspecified() {
                Network::Loopback
            } else if ip.is_unique_local() {
                Network::Private
            } else {
                Network::Public
            }
        }
    }
}

/// An IPv4 address in any spelling the upstream client's resolver takes
/// (`inet_aton`'s): besides `169.254.169.254`, one to four parts, each decimal,
/// octal (a leading `0`) or hex (`0x`), the last filling the bytes left, so
/// that `2852039166`, `0xa9fea9fe` and `169.254.43518` are the same address.
fn ipv4(host: &str) -> Option<Ipv4Addr> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(ip);
    }
    let parts: Vec<u64> = host.split('.').map(ipv4_part).collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|p| *p > 0xff) {
        return None;
    }
    let width = 32 - 8 * leading.len();
    if *last >> width != 0 {
        return None;
    }
    let high = leading.iter().fold(0, |value, p| value << 8 | p);
    u32::try_from(high << width | last).ok().map(Ipv4Addr::from)
}

/// One part of [`ipv4`]'s spellings as a number.
fn ipv4_part(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_placed_on_their_network() {
        for (host, want) in [
            ("api.openai.com", Network::Public),
            ("8.8.8.8", Network::Public),
            ("[2001:db8::1]", Network::Public),
            ("127.0.0.1", Network::Loopback),
            ("127.1", Network::Loopback),
            ("[::1]", Network::Loopback),
            ("0.0.0.0", Network::Loopback),
            ("LocalHost.", Network::Loopback),
            ("ollama.localhost", Network::Loopback),
            ("10.0.0.5", Network::Private),
            ("172.16.3.4", Network::Private),
            ("192.168.1.10", Network::Private),
            ("[fd12:3456::1]", Network::Private),
            ("[::ffff:10.1.2.3]", Network::Private),
            ("169.254.169.254", Network::Metadata),
            ("169.254.169.254.", Network::Metadata),
            ("2852039166", Network::Metadata),
            ("0xa9fea9fe", Network::Metadata),
            ("0251.0376.0251.0376", Network::Metadata),
            ("169.254.43518", Network::Metadata),
            ("[fd00:ec2::254]", Network::Metadata),
            ("[fe80::1]", Network::Metadata),
            ("[fe80::1%25eth0]", Network::Metadata),
            ("[::ffff:169.254.169.254]", Network::Metadata),
            ("100.100.100.200", Network::Metadata),
            ("Metadata.Google.Internal", Network::Metadata),
        ] {
            assert_eq!(network(host), want, "{host}");
        }
    }

    #[test]
    fn numbers_that_are_not_addresses_are_names() {
        for host in [
            "256.1.1.1.1",
            "1.2.3.4.5",
            "1.256.0.0",
            "4294967296",
            "0x",
            "+1",
        ] {
            assert_eq!(ipv4(host), None, "{host}");
        }
    }

    #[test]
    fn user_info_is_hidden() {
        assert_eq!(
            redacted("https://user:secret@host:8443/v1?a=b@c"),
            "https://***@host:8443/v1?a=b@c"
        );
        assert_eq!(redacted("https://a@b@host/v1"), "https://***@host/v1");
        assert_eq!(redacted("https://host/v1/@x"), "https://host/v1/@x");
        assert_eq!(redacted("not a url"), "not a url");
    }
}
