//! What a column's name says it holds, under the names applications give their columns:
//! the name is cut into words (`lastSignInIP`, `last_sign_in_ip`, `lastname` alike), and its
//! head word (the last, less words such as `number` or `normalized`) says the kind, the
//! words before it telling which: `first_name` and `billing_name` are people's names,
//! `file_name` is not; `email_address` is an email and `billing_address` a postal address;
//! `reset_password_token` and `encrypted_otp_secret_iv` are secrets. The table gives the
//! context some names need: `name` in a people-like table (`users`, `contacts`), `city` or
//! `line1` beside a street or a postcode.

/// The kinds, as findings and evidence name them.
pub(crate) const EMAIL: &str = "email";
pub(crate) const PHONE: &str = "phone";
pub(crate) const SECRET: &str = "secret";
pub(crate) const PASSWORD: &str = "password";
pub(crate) const IBAN: &str = "iban";
pub(crate) const CARD: &str = "card";
pub(crate) const NAME: &str = "name";
pub(crate) const USERNAME: &str = "username";
pub(crate) const ADDRESS: &str = "address";
pub(crate) const POSTCODE: &str = "postcode";
pub(crate) const IP: &str = "ip";
pub(crate) const IDENTITY: &str = "identity number";
pub(crate) const PERSONAL_TEXT: &str = "personal text";

/// Words run together in column names, and the words they are.
const COMPOUNDS: &[(&str, &[&str])] = &[
    ("firstname", &["first", "name"]),
    ("lastname", &["last", "name"]),
    ("fullname", &["full", "name"]),
    ("givenname", &["given", "name"]),
    ("familyname", &["family", "name"]),
    ("middlename", &["middle", "name"]),
    ("maidenname", &["maiden", "name"]),
    ("displayname", &["display", "name"]),
    ("realname", &["real", "name"]),
    ("nickname", &["nick", "name"]),
    ("screenname", &["screen", "name"]),
    ("username", &["user", "name"]),
    ("userid", &["user", "id"]),
    ("emailaddress", &["email", "address"]),
    ("ipaddress", &["ip", "address"]),
    ("ipaddr", &["ip", "addr"]),
    ("streetaddress", &["street", "address"]),
    ("phonenumber", &["phone", "number"]),
    ("mobilenumber", &["mobile", "number"]),
    ("zipcode", &["zip", "code"]),
    ("postalcode", &["postal", "code"]),
    ("housenumber", &["house", "number"]),
    ("apikey", &["api", "key"]),
    ("secretkey", &["secret", "key"]),
    ("privatekey", &["private", "key"]),
    ("accesstoken", &["access", "token"]),
    ("refreshtoken", &["refresh", "token"]),
    ("authtoken", &["auth", "token"]),
    ("passwd", &["password"]),
    ("pwd", &["password"]),
    ("passwordhash", &["password", "hash"]),
    ("birthdate", &["birth", "date"]),
    ("birthday", &["birth", "date"]),
    ("dob", &["birth", "date"]),
];

/// Words after the head that do not change what the column holds: `phone_number`,
/// `email_normalized`, `phone_work`, `address_line_1` (numbers are left out too).
const TRAILING: &str = "\
    number no num nr value text str string raw normalized normalised canonical lc lower \
    plain plaintext e164 formatted international primary secondary alt alternate other old \
    new work home office personal private business main direct";

/// Heads that say what kind of thing the words before describe, not the thing:
/// `email_status`, `token_type`, `phone_country`, `password_hint`.
const DESCRIPTORS: &str = "\
    type types kind status state count format version prefix suffix hint length algorithm \
    algo provider scope scopes label method mode source verified confirmed enabled \
    preference preferences setting settings frequency domain template id ids field policy \
    visibility locale language timezone country region expires expiry sent at on strategy \
    url uri path title description digit digits last4 brand fingerprint regex pattern";

/// Words anywhere in the name that make it a secret: credentials, tokens, one-time codes,
/// what encryption left.
const SECRET_WORDS: &str = "\
    token tokens secret secrets credential credentials ciphertext salt otp totp hotp \
    passcode passphrase pin pincode encrypted crypted nonce";
const PASSWORD_WORDS: &str = "password pbkdf2 bcrypt scrypt argon2";
/// After a password word, heads that make the column a secret rather than the hash:
/// `password_salt`, `reset_password_token`.
const NOT_THE_PASSWORD: &str = "salt iv token code key nonce";
/// `<word>_key` that is a secret (`api_key`, `signing_key`), not a setting's or an object's.
const SECRET_KEYS: &str = "\
    api secret private signing sign access encryption client auth session master license \
    licence webhook hmac shared consumer app integration account recovery activation \
    unlock otp mfa confirmation verification reset";
/// `<word>_code(s)` that is a secret: `backup_codes`, `verification_code`.
const SECRET_CODES: &str = "\
    backup recovery verification verify reset confirmation confirm auth authentication \
    authorization activation unlock login mfa security sms email invite invitation magic \
    one access";
/// `<word>_hash`, `<word>_digest` that is a secret's, not a file's or a commit's.
const SECRET_HASHES: &str = "\
    key session remember reset confirmation api access refresh code pin recovery unlock \
    auth login invite invitation verification activation";
/// `<word>_data` that holds a session or credentials: `auth_data`, `session_data`.
const SECRET_DATA: &str = "auth session oauth credential sso saml";

const EMAIL_WORDS: &str = "email emails mail mails e-mail";
/// `<word>_address` that is an email: `from_address`, `reply_to_address`.
const EMAIL_ADDRESSES: &str = "\
    email mail e from to reply cc bcc sender recipient notification";
const PHONE_WORDS: &str = "\
    phone phones mobile cell cellphone telephone tel fax msisdn whatsapp";
const IP_WORDS: &str = "ip ips ipv4 ipv6";
/// `<word>_addr(ess)` that is a network address: `remote_addr`, `mac_address`.
const IP_ADDRESSES: &str = "ip ipv4 ipv6 remote client src origin mac peer forwarded";
/// `<word>_address` that is no postal address.
const NOT_POSTAL: &str = "\
    server host smtp listen bind web url wallet contract node proxy gateway dns broadcast \
    multicast base bitcoin btc eth ethereum crypto memory public deposit token";
const STREET_WORDS: &str = "address addr addresses addrs street streets house apartment apt";
const CITY_WORDS: &str = "city town locality suburb village municipality";
const POSTCODE_WORDS: &str = "zip postcode plz";
/// `<word>_name` that is a person's (or a customer company's): not `file_name`.
const PERSON_NAMES: &str = "\
    first given last family middle maiden full display real legal preferred birth \
    christian sur fore billing bill shipping ship delivery contact customer client \
    recipient receiver sender holder cardholder card patient employee member person author \
    owner guardian parent mother father spouse emergency beneficiary signer signatory \
    attendee guest passenger traveler traveller driver student teacher doctor company \
    business organization organisation employer phonetic kana committer reviewer assignee \
    reporter";
/// `<word>_name` that is a login: `user_name`, `screen_name`.
const LOGIN_NAMES: &str = "user login screen nick account";
/// Heads that are a person's name whatever precedes them.
const PERSON_HEADS: &str = "\
    surname forename author recipient signatory signer cardholder attendee beneficiary \
    person committer assistant pronunciation";
/// Heads that are a login or a handle on another site.
const LOGIN_HEADS: &str = "\
    username login nick twitter linkedin skype discord mastodon github telegram instagram \
    facebook bluesky wechat";
/// Heads that are a company's name where the table is about people or addresses
/// (`addresses.company`, `users.organization`): sole traders are people.
const COMPANY_HEADS: &str = "company organization organisation employer business";
/// What a table about people is called (its last word, singular).
const PEOPLE: &str = "\
    user person people customer contact member employee staff patient student author \
    profile client lead guest attendee participant recipient subscriber applicant \
    candidate driver passenger traveler traveller volunteer donor buyer seller teacher \
    signer beneficiary admin reviewer address identity prospect";
/// Tables about people's details: `user_details`, `customer_info`.
const DETAILS: &str = "detail details info data profile setting";
const IDENTITY_WORDS: &str = "ssn nino passport birth";
/// Words that together are an identity number or a birth date: `national_id`, `tax_number`.
const IDENTITY_PAIRS: &[[&str; 2]] = &[
    ["national", "id"],
    ["national", "number"],
    ["tax", "id"],
    ["tax", "number"],
    ["social", "security"],
    ["insurance", "number"],
    ["vat", "number"],
    ["vat", "id"],
    ["driver", "license"],
    ["drivers", "license"],
    ["driving", "licence"],
];
const PERSONAL_TEXT_HEADS: &str = "bio biography";

/// The words of a name: `lastSignInIP` and `last_sign_in_ip` are `last sign in ip`.
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            words.push(std::mem::take(&mut word));
            continue;
        }
        let previous = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        let boundary = match previous {
            Some(p) if p.is_alphanumeric() => {
                // aB, a1, 1a, and the B of ABc (an acronym followed by a word).
                (p.is_lowercase() && c.is_uppercase())
                    || (p.is_ascii_digit() != c.is_ascii_digit())
                    || (p.is_uppercase()
                        && c.is_uppercase()
                        && next.is_some_and(|n| n.is_lowercase()))
            }
            _ => false,
        };
        if boundary {
            words.push(std::mem::take(&mut word));
        }
        word.extend(c.to_lowercase());
    }
    words.push(word);
    words
        .into_iter()
        .filter(|w| !w.is_empty())
        .flat_map(|w| match COMPOUNDS.iter().find(|(c, _)| *c == w) {
            Some((_, parts)) => parts.iter().map(|p| p.to_string()).collect(),
            None => vec![w],
        })
        .collect()
}

/// A table's words, its last one made singular: `auth_user`, `people`, `addresses`.
fn table_words(table: &str) -> Vec<String> {
    let mut words = words(table);
    if let Some(last) = words.last_mut()
        && last.len() > 3
    {
        if let Some(stem) = last.strip_suffix("sses") {
            *last = format!("{stem}ss");
        } else if let Some(stem) = last.strip_suffix('s').filter(|s| !s.ends_with('s')) {
            *last = stem.to_owned();
        }
    }
    words
}

/// Whether `word` is one of `list`'s (words separated by spaces).
fn listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

/// Whether any of `words` is one of `list`'s.
fn any(words: &[String], list: &str) -> bool {
    words.iter().any(|w| listed(list, w))
}

fn is_trailing(word: &str) -> bool {
    listed(TRAILING, word) || word.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `table` holds people: its last word says so (`users`, `crm_contacts`), or it
/// holds their details (`user_details`); an application's clients are not people
/// (`oauth_clients`).
fn people_like(table: &[String]) -> bool {
    if any(
        table,
        "oauth oauth2 api app application integration service",
    ) {
        return false;
    }
    match table.split_last() {
        Some((last, _)) if listed(PEOPLE, last) => true,
        Some((last, before)) => listed(DETAILS, last) && any(before, PEOPLE),
        None => false,
    }
}

/// Whether the table holds postal addresses: it is called so, or another column than
/// `column` is a street, an address or a postcode.
fn address_context(table: &[String], column: &str, siblings: &[&str]) -> bool {
    let postal = |sibling: &&str| {
        let w = words(sibling);
        let head = w.iter().rev().find(|w| !is_trailing(w));
        *sibling != column
            && head.is_some_and(|h| {
                listed("street zip postcode address addr", h)
                    || (h == "code" && any(&w, "postal post"))
            })
            && !any(&w, EMAIL_WORDS)
            && !any(&w, IP_WORDS)
    };
    table.last().is_some_and(|w| listed("address location", w)) || siblings.iter().any(postal)
}

/// What the name of `column` of `table` (its other columns: `siblings`) says it holds:
/// one of the kinds above, or `None` when it says nothing personal.
pub(crate) fn kind_by_name(table: &str, column: &str, siblings: &[&str]) -> Option<&'static str> {
    let w = words(column);
    let at = w.iter().rposition(|w| !is_trailing(w))?;
    let (head, before) = (w[at].as_str(), &w[..at]);
    let is = |list: &str| listed(list, head);
    let after = |list: &str| before.last().is_some_and(|m| listed(list, m));
    let table = table_words(table);

    if is("name names") {
        return match before.last() {
            Some(m) if listed(LOGIN_NAMES, m) => Some(USERNAME),
            Some(m) if listed(PERSON_NAMES, m) => Some(NAME),
            None if people_like(&table) => Some(NAME),
            _ => None,
        };
    }
    if any(&w, IDENTITY_WORDS)
        || w.windows(2)
            .any(|p| IDENTITY_PAIRS.contains(&[&*p[0], &*p[1]]))
    {
        return Some(IDENTITY);
    }
    // What is encrypted is a secret, whatever it is (`encrypted_url`); a session id is a
    // secret too, where other ids are references.
    let session_id = head == "id" && after("session");
    if (any(&w, "encrypted crypted ciphertext") && !any(&w, PASSWORD_WORDS)) || session_id {
        return Some(SECRET);
    }
    if is(DESCRIPTORS) {
        return None;
    }
    if any(&w, PASSWORD_WORDS) {
        return Some(if is(NOT_THE_PASSWORD) {
            SECRET
        } else {
            PASSWORD
        });
    }
    if any(&w, SECRET_WORDS)
        || (head == "key"
            && (after(SECRET_KEYS)
                || (before.is_empty() && any(&table, "token tokens secret credential api"))))
        || (is("code codes") && any(before, SECRET_CODES))
        || (is("hash digest") && any(before, SECRET_HASHES))
        || (is("data payload blob") && any(before, SECRET_DATA))
        || head == "iv"
    {
        return Some(SECRET);
    }
    let address = is("address addr addresses addrs");
    if is(EMAIL_WORDS) || (address && after(EMAIL_ADDRESSES)) {
        return Some(EMAIL);
    }
    if is(PHONE_WORDS) {
        return Some(PHONE);
    }
    if is(IP_WORDS)
        || (address && after(IP_ADDRESSES))
        || (head == "for" && after("forwarded"))
        || (head == "host" && after("remote"))
    {
        return Some(IP);
    }
    if head == "iban" || (head == "account" && after("bank")) {
        return Some(IBAN);
    }
    if is("card pan") {
        return Some(CARD);
    }
    if is(POSTCODE_WORDS) || (head == "code" && after("postal post zip")) {
        return Some(POSTCODE);
    }
    if (is(STREET_WORDS) && !after(NOT_POSTAL))
        || (head == "line"
            && (any(before, "address addr street") || address_context(&table, column, siblings)))
        || (is(CITY_WORDS)
            && (any(before, "address addr") || address_context(&table, column, siblings)))
        || (head == "location" && people_like(&table))
    {
        return Some(ADDRESS);
    }
    if is(LOGIN_HEADS) || (head == "handle" && (before.len() == 1 || people_like(&table))) {
        return Some(USERNAME);
    }
    if is(PERSON_HEADS)
        || (is(COMPANY_HEADS) && (people_like(&table) || address_context(&table, column, siblings)))
    {
        return Some(NAME);
    }
    if is(PERSONAL_TEXT_HEADS) || (head == "me" && after("about")) {
        return Some(PERSONAL_TEXT);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(table: &str, column: &str) -> Option<&'static str> {
        kind_by_name(table, column, &[])
    }

    #[test]
    fn names_are_cut_into_words() {
        assert_eq!(words("lastSignInIP"), ["last", "sign", "in", "ip"]);
        assert_eq!(words("IPAddress"), ["ip", "address"]);
        assert_eq!(words("address_line1"), ["address", "line", "1"]);
        assert_eq!(words("firstname"), ["first", "name"]);
        assert_eq!(words("E-Mail"), ["e", "mail"]);
        assert_eq!(table_words("addresses"), ["address"]);
        assert_eq!(table_words("auth_user"), ["auth", "user"]);
    }

    #[test]
    fn the_names_applications_give_personal_columns() {
        let cases = [
            // Emails, phones, network addresses.
            (
                EMAIL,
                "users",
                "email unconfirmed_email billing_email emailAddress email_address \
                public_email from_address commit_email",
            ),
            (
                EMAIL,
                "emails_text",
                "from_addr to_addrs reply_to_addr email1",
            ),
            (
                PHONE,
                "users",
                "phone phone_number mobile contact_phone fax telephone",
            ),
            (
                PHONE,
                "contacts",
                "phone_work phone_home phone_mobile assistant_phone",
            ),
            (
                IP,
                "users",
                "current_sign_in_ip last_sign_in_ip ip ip_address remote_addr \
                client_ip lastSignInIP x_forwarded_for mac_address",
            ),
            // People's names, logins, companies in people's tables.
            (
                NAME,
                "users",
                "first_name firstname given_name last_name surname family_name \
                full_name display_name name billing_name contact_person company_name legal_name \
                author_name cardholder_name organization",
            ),
            (
                USERNAME,
                "users",
                "username user_name login screen_name twitter nickname",
            ),
            // Secrets under the many names they take.
            (
                SECRET,
                "users",
                "encrypted_otp_secret encrypted_otp_secret_iv \
                encrypted_otp_secret_salt otp_backup_codes backup_codes recovery_codes \
                reset_password_token confirmation_token token_digest remember_digest \
                password_salt private_key client_secret webhook_secret signing_key credentials \
                auth_data api_key apiKey session_data token_encrypted key_hash otp_secret \
                verification_code feed_token",
            ),
            (SECRET, "trackers", "session_id confirmation_key"),
            (SECRET, "web_hooks", "encrypted_url encrypted_url_iv"),
            (
                PASSWORD,
                "users",
                "password encrypted_password hashed_password password_digest \
                password_hash crypted_password passwd",
            ),
            // Postal addresses.
            (
                ADDRESS,
                "orders",
                "address street billing_address shipping_address address_line1 \
                address_line_2 street_address house_number",
            ),
            (
                ADDRESS,
                "contacts",
                "primary_address_street primary_address_city location",
            ),
            (
                POSTCODE,
                "orders",
                "zip zipcode zip_code postcode postal_code",
            ),
            (
                IDENTITY,
                "users",
                "ssn national_id tax_id date_of_birth passport_number",
            ),
            (CARD, "payments", "card_number credit_card"),
            (IBAN, "payouts", "iban bank_account"),
            (PERSONAL_TEXT, "users", "bio about_me"),
        ];
        for (kind, table, columns) in cases {
            for column in columns.split_whitespace() {
                assert_eq!(says(table, column), Some(kind), "{table}.{column}");
            }
        }
    }

    #[test]
    fn what_names_personal_words_without_being_personal() {
        for column in "products.name organizations.name users_groups.name users.file_name \
            personal_access_tokens.name users.token_type users.email_status \
            users.phone_country_code users.password_hint settings.key active_storage_blobs.key \
            blobs.checksum commits.commit_hash files.content_hash servers.server_address \
            wallets.wallet_address coupons.code products.discount_code stores.city \
            discard.discard_reason products.description payments.card_brand payments.card_last4 \
            projects.handle_path ar_internal_metadata.value deploy_keys.public_key \
            events.location users.user_id oauth2clients.name"
            .split_whitespace()
        {
            let (table, column) = column.split_once('.').unwrap();
            assert_eq!(says(table, column), None, "{table}.{column}");
        }
    }

    #[test]
    fn the_table_and_the_other_columns_give_context() {
        let city = |table, siblings: &[&str]| kind_by_name(table, "city", siblings);
        assert_eq!(city("stores", &["id", "city", "zip"]), Some(ADDRESS));
        assert_eq!(city("stores", &["id", "city", "country"]), None);
        assert_eq!(city("spree_addresses", &[]), Some(ADDRESS));
        assert_eq!(
            kind_by_name("locations", "line1", &["line1", "line2"]),
            Some(ADDRESS)
        );
        assert_eq!(kind_by_name("orders", "line1", &["id", "email"]), None);
        assert_eq!(kind_by_name("event_log", "line", &["id", "line"]), None);
        assert_eq!(says("authtoken_token", "key"), Some(SECRET));
        assert_eq!(says("contacts", "name"), Some(NAME));
        assert_eq!(says("addresses", "company"), Some(NAME));
        assert_eq!(says("products", "company"), None);
        assert_eq!(says("user_details", "organization"), Some(NAME));
    }
}
