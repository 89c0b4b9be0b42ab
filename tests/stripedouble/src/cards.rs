//! Stripe's test PaymentMethods (`pm_card_visa`, `pm_card_chargeDeclined`, ...): the card each
//! stands for and what happens when it is charged. The ids and outcomes are the ones Stripe's
//! testing documentation gives; the double knows no other cards.

/// What charging a card does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    Succeeds,
    /// The issuer declines: `code`, `decline_code`, `message`, `param` of the 402 card_error.
    Declines(&'static Decline),
    /// 3-D Secure on every payment: on-session the customer is asked (`requires_action`),
    /// off-session the issuer declines with `authentication_required`.
    AlwaysAuthenticates,
    /// 3-D Secure unless the card was saved for off-session use (`setup_future_usage`):
    /// on-session payments always ask; off-session ones succeed once it is set up.
    AuthenticatesUnlessSetUp,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decline {
    pub code: &'static str,
    pub decline_code: &'static str,
    pub message: &'static str,
    pub param: Option<&'static str>,
}

pub(crate) const GENERIC_DECLINE: Decline = Decline {
    code: "card_declined",
    decline_code: "generic_decline",
    message: "Your card was declined.",
    param: None,
};
const INSUFFICIENT_FUNDS: Decline = Decline {
    code: "card_declined",
    decline_code: "insufficient_funds",
    message: "Your card has insufficient funds.",
    param: None,
};
const EXPIRED_CARD: Decline = Decline {
    code: "expired_card",
    decline_code: "expired_card",
    message: "Your card has expired.",
    param: Some("exp_month"),
};
const INCORRECT_CVC: Decline = Decline {
    code: "incorrect_cvc",
    decline_code: "incorrect_cvc",
    message: "Your card's security code is incorrect.",
    param: Some("cvc"),
};
const PROCESSING_ERROR: Decline = Decline {
    code: "processing_error",
    decline_code: "processing_error",
    message: "An error occurred while processing your card. Try again in a little bit.",
    param: None,
};
pub(crate) const AUTHENTICATION_REQUIRED: Decline = Decline {
    code: "authentication_required",
    decline_code: "authentication_required",
    message: "Your card was declined. This transaction requires authentication.",
    param: None,
};

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TestCard {
    /// The test PaymentMethod id Stripe documents (the first of its aliases).
    pub ids: &'static [&'static str],
    pub brand: &'static str,
    pub last4: &'static str,
    pub funding: &'static str,
    pub behaviour: Behaviour,
}

pub(crate) static TEST_CARDS: &[TestCard] = &[
    TestCard {
        ids: &["pm_card_visa"],
        brand: "visa",
        last4: "4242",
        funding: "credit",
        behaviour: Behaviour::Succeeds,
    },
    TestCard {
        ids: &["pm_card_visa_debit"],
        brand: "visa",
        last4: "5556",
        funding: "debit",
        behaviour: Behaviour::Succeeds,
    },
    TestCard {
        ids: &["pm_card_mastercard"],
        brand: "mastercard",
        last4: "4444",
        funding: "credit",
        behaviour: Behaviour::Succeeds,
    },
    TestCard {
        ids: &["pm_card_amex"],
        brand: "amex",
        last4: "0005",
        funding: "credit",
        behaviour: Behaviour::Succeeds,
    },
    TestCard {
        ids: &["pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"],
        brand: "visa",
        last4: "0002",
        funding: "credit",
        behaviour: Behaviour::Declines(&GENERIC_DECLINE),
    },
    TestCard {
        ids: &[
            "pm_card_chargeDeclinedInsufficientFunds",
            "pm_card_visa_chargeDeclinedInsufficientFunds",
        ],
        brand: "visa",
        last4: "9995",
        funding: "credit",
        behaviour: Behaviour::Declines(&INSUFFICIENT_FUNDS),
    },
    TestCard {
        ids: &["pm_card_chargeDeclinedExpiredCard"],
        brand: "visa",
        last4: "0069",
        funding: "credit",
        behaviour: Behaviour::Declines(&EXPIRED_CARD),
    },
    TestCard {
        ids: &["pm_card_chargeDeclinedIncorrectCvc"],
        brand: "visa",
        last4: "0127",
        funding: "credit",
        behaviour: Behaviour::Declines(&INCORRECT_CVC),
    },
    TestCard {
        ids: &["pm_card_chargeDeclinedProcessingError"],
        brand: "visa",
        last4: "0119",
        funding: "credit",
        behaviour: Behaviour::Declines(&PROCESSING_ERROR),
    },
    TestCard {
        ids: &[
            "pm_card_authenticationRequired",
            "pm_card_threeDSecure2Required",
        ],
        brand: "visa",
        last4: "3184",
        funding: "credit",
        behaviour: Behaviour::AlwaysAuthenticates,
    },
    TestCard {
        ids: &["pm_card_authenticationRequiredOnSetup"],
        brand: "visa",
        last4: "3155",
        funding: "credit",
        behaviour: Behaviour::AuthenticatesUnlessSetUp,
    },
];

/// The test card a documented test PaymentMethod id stands for.
pub(crate) fn by_test_id(id: &str) -> Option<&'static TestCard> {
    TEST_CARDS.iter().find(|c| c.ids.contains(&id))
}

/// Expiry year of every test card: a few years ahead, so none is expired by date.
pub(crate) fn exp_year() -> i64 {
    1970 + crate::ids::now() / 31_556_952 + 3
}

/// A stable per-card fingerprint (Stripe's is 16 characters, the same for the same number).
pub(crate) fn fingerprint(card: &TestCard) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, card.ids[0].as_bytes());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    digest.as_ref()[..16]
        .iter()
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_resolves_and_ids_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for card in TEST_CARDS {
            for id in card.ids {
                assert!(seen.insert(*id), "{id} listed twice");
                assert_eq!(by_test_id(id), Some(card));
            }
        }
        assert_eq!(by_test_id("pm_card_unknown"), None);
    }
}
