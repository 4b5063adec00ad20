#include "agent/secrets/aws/sts_xml.h"

#include <gtest/gtest.h>

namespace sa::agent::secrets::aws {
namespace {

// The documented answer shape of
// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html
constexpr std::string_view kAnswer =
    R"(<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:agents:secure-agent</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/secure-agent/secure-agent</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:secure-agent</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2014-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <Provider>oidc.eks.us-east-1.amazonaws.com</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>)";

TEST(StsXmlTest, ParsesTheDocumentedAnswer) {
    auto credentials = parse_assume_role_with_web_identity(kAnswer);
    ASSERT_TRUE(credentials.has_value()) << credentials.error().describe();
    EXPECT_EQ(credentials->access_key_id.reveal(), "ASgeIAIOSFODNN7EXAMPLE");
    EXPECT_EQ(credentials->secret_access_key.reveal(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
    EXPECT_EQ(credentials->session_token.reveal(),
              "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE");
    EXPECT_EQ(credentials->expiration, 1414191623);
}

TEST(StsXmlTest, MissingFieldIsInvalidArgumentNamingIt) {
    std::string answer(kAnswer);
    answer.replace(answer.find("<SessionToken>"),
                   answer.find("</SessionToken>") + 15 - answer.find("<SessionToken>"), "");
    auto credentials = parse_assume_role_with_web_identity(answer);
    ASSERT_FALSE(credentials.has_value());
    EXPECT_EQ(credentials.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(credentials.error().message.find("SessionToken"), std::string::npos);
    EXPECT_EQ(credentials.error().message.find("wJalrXUtnFEMI"), std::string::npos);
}

TEST(StsXmlTest, RefusesMalformedXmlAndDoctypes) {
    EXPECT_FALSE(parse_assume_role_with_web_identity("<AssumeRoleWithWebIdentityResponse>"));
    EXPECT_FALSE(parse_assume_role_with_web_identity("not xml at all"));
    EXPECT_FALSE(parse_assume_role_with_web_identity(""));
    const std::string laughs =
        R"(<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>)"
        "<AssumeRoleWithWebIdentityResponse>&b;</AssumeRoleWithWebIdentityResponse>";
    auto refused = parse_assume_role_with_web_identity(laughs);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, ErrorCode::invalid_argument);
    std::string deep;
    for (int i = 0; i < 100; ++i) deep = "<a>" + deep + "</a>";
    EXPECT_FALSE(parse_assume_role_with_web_identity(deep));
}

TEST(StsXmlTest, ParsesTheDocumentedErrorResponse) {
    const StsError error = parse_sts_error(
        R"(<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">)"
        "<Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
        "<Message>No OpenIDConnect provider found in your account</Message></Error>"
        "<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>");
    EXPECT_EQ(error.code, "InvalidIdentityToken");
    EXPECT_EQ(error.message, "No OpenIDConnect provider found in your account");
    EXPECT_TRUE(parse_sts_error("<html>bad gateway</html>").code.empty());
    EXPECT_TRUE(parse_sts_error("bad gateway").code.empty());
}

TEST(StsXmlTest, ParsesIso8601Utc) {
    EXPECT_EQ(parse_iso8601_utc("1970-01-01T00:00:00Z").value(), 0);
    EXPECT_EQ(parse_iso8601_utc("2015-08-30T12:36:00Z").value(), 1440938160);
    EXPECT_EQ(parse_iso8601_utc("2015-08-30T12:36:00.123Z").value(), 1440938160);
    EXPECT_FALSE(parse_iso8601_utc("2015-08-30 12:36:00Z"));
    EXPECT_FALSE(parse_iso8601_utc("2015-08-30T12:36:00"));
    EXPECT_FALSE(parse_iso8601_utc("2015-13-30T12:36:00Z"));
    EXPECT_FALSE(parse_iso8601_utc("2015-08-30T12:36:00.Z"));
}

}  // namespace
}  // namespace sa::agent::secrets::aws
