"""openlinktoken 2.2.1 as a test oracle (never imported by product code).

`Oracle(java_ssn=True)` swaps in the one documented exception (ADR 0003): the SSN is validated
after normalization, as OpenToken's Java implementation does.
"""

from __future__ import annotations

from openlinktoken.attributes.field_registry import FieldRegistry
from openlinktoken.attributes.person.social_security_number_attribute import SocialSecurityNumberAttribute
from openlinktoken.tokens.token_definition import TokenDefinition
from openlinktoken.tokens.token_generator import TokenGenerator
from openlinktoken.tokens.tokenizer.sha256_tokenizer import SHA256Tokenizer
from openlinktoken.tokentransformer.hash_token_transformer import HashTokenTransformer

from exchange.tokenizer.engine import PersonAttributes
from exchange.tokenizer.rules import RULE_IDS

FIELDS = {
    "first_name": "FirstName",
    "last_name": "LastName",
    "birth_date": "BirthDate",
    "sex": "Sex",
    "postal_code": "PostalCode",
    "ssn": "SocialSecurityNumber",
}


class JavaSsnAttribute(SocialSecurityNumberAttribute):
    """The Java rule: validate(normalize(value))."""

    def validate(self, value: str) -> bool:
        if value is None:
            return False
        return super().validate(self.normalize(value))


class Oracle:
    def __init__(self, secret: str, java_ssn: bool = True) -> None:
        builder = FieldRegistry.Builder.from_defaults()
        if java_ssn:
            builder.register("SocialSecurityNumber", JavaSsnAttribute, JavaSsnAttribute())
        self.generator = TokenGenerator(
            TokenDefinition(), SHA256Tokenizer([HashTokenTransformer(secret)]), field_registry=builder.build()
        )

    def tokens(self, person: PersonAttributes) -> tuple[str, ...]:
        attrs = {FIELDS[k]: v for k, v in person._asdict().items() if v is not None}
        result = self.generator.get_all_tokens_via_field_id(attrs)
        return tuple(result.tokens[r] for r in RULE_IDS)

    def signatures(self, person: PersonAttributes) -> dict[str, str]:
        attrs = {FIELDS[k]: v for k, v in person._asdict().items() if v is not None}
        return self.generator.get_all_token_signatures_via_field_id(attrs)
