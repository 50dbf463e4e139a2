//! The SMTP dialogue a tool printed before TLS (gnutls-cli `-V`, s_client `-debug`, msmtp
//! `--debug`, swaks), and the first refusal in it: a tool that gives up with its own words
//! ("error receiving '220 '", "wrong version number", "does not support TLS") after the server
//! answered 421, 454 or 550 is reported, as a contract program would be, with that reply — the
//! client's own view of what happened, which is all there is against a server we do not control.

use wire::{ClientResult, Stage};

/// One exchange: the command sent (`None` for the banner) and the whole reply read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub command: Option<String>,
    pub reply: String,
}

/// The first reply of the dialogue that is a refusal (4xx or 5xx), as the contract's error:
/// `greeting: 421 …` (smtp), `EHLO: 550 …` (smtp), `STARTTLS refused: 454 …` (starttls) — or,
/// for a tool that sent STARTTLS although the EHLO reply did not offer it (s_client "trying
/// anyway"), `STARTTLS not offered`.
pub fn first_refusal(dialogue: &[Exchange]) -> Option<ClientResult> {
    let offered = dialogue.iter().any(|e| {
        e.command.as_deref().is_some_and(|c| c.to_ascii_uppercase().starts_with("EHLO"))
            && e.reply.lines().any(|l| l.get(4..).is_some_and(|x| x.trim().eq_ignore_ascii_case("STARTTLS")))
    });
    dialogue.iter().find_map(|e| {
        let last = e.reply.lines().rev().find(|l| !l.trim().is_empty())?.trim();
        if !matches!(last.as_bytes().first(), Some(b'4' | b'5'))
            || !last.as_bytes().get(..3)?.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let reply = e.reply.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" / ");
        let verb = e.command.as_deref().and_then(|c| c.split_whitespace().next()).map(str::to_ascii_uppercase);
        Some(match verb.as_deref() {
            None => ClientResult::error(Stage::Smtp, format!("greeting: {reply}")),
            Some("STARTTLS") if !offered => ClientResult::error(
                Stage::Starttls,
                format!("STARTTLS not offered (sent anyway, the server answered {reply})"),
            ),
            Some("STARTTLS") => ClientResult::error(Stage::Starttls, format!("STARTTLS refused: {reply}")),
            Some(verb) => ClientResult::error(Stage::Smtp, format!("{verb}: {reply}")),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(command: Option<&str>, reply: &str) -> Exchange {
        Exchange { command: command.map(str::to_string), reply: reply.to_string() }
    }

    #[test]
    fn the_first_refusal_with_its_stage() {
        let banner = [ex(None, "421 4.3.2 mx.test Service not available, closing")];
        assert_eq!(
            first_refusal(&banner),
            Some(ClientResult::error(Stage::Smtp, "greeting: 421 4.3.2 mx.test Service not available, closing"))
        );
        let starttls = [
            ex(None, "220 mx.test ESMTP"),
            ex(Some("EHLO client.test"), "250-mx.test\n250 STARTTLS"),
            ex(Some("STARTTLS"), "454 4.7.0 TLS not available due to temporary reason"),
        ];
        assert_eq!(
            first_refusal(&starttls),
            Some(ClientResult::error(
                Stage::Starttls,
                "STARTTLS refused: 454 4.7.0 TLS not available due to temporary reason"
            ))
        );
        let ehlo = [
            ex(None, "220 mx.test"),
            ex(Some("EHLO x"), "550 5.7.1 EHLO rejected by policy"),
            ex(Some("HELO x"), "250 ok"),
        ];
        assert_eq!(
            first_refusal(&ehlo),
            Some(ClientResult::error(Stage::Smtp, "EHLO: 550 5.7.1 EHLO rejected by policy"))
        );
        assert_eq!(first_refusal(&starttls[..2]), None);
        let unoffered = [
            ex(None, "220 mx.test ESMTP"),
            ex(Some("EHLO client.test"), "250-mx.test\n250 8BITMIME"),
            ex(Some("STARTTLS"), "502 5.5.2 Command not implemented"),
        ];
        assert_eq!(
            first_refusal(&unoffered),
            Some(ClientResult::error(
                Stage::Starttls,
                "STARTTLS not offered (sent anyway, the server answered 502 5.5.2 Command not implemented)"
            ))
        );
    }
}
