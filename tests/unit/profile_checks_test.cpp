#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "profile/checks.hpp"

// The pure validators of profile values, on their own: what each accepts and refuses at
// its edges, without a profile around it.

namespace qvm::profile {
namespace {

PortForward forward(std::string_view rule) {
  auto read = read_forward(rule);
  if (const auto* error = std::get_if<std::string>(&read)) {
    ADD_FAILURE() << rule << ": " << *error;
    return {};
  }
  return std::get<PortForward>(read);
}

std::string forward_error(std::string_view rule) {
  auto read = read_forward(rule);
  if (const auto* error = std::get_if<std::string>(&read)) return *error;
  return "(accepted)";
}

TEST(ProfileChecksTest, MacAddressesAreSixHexPairsAndUnicastHasAnEvenFirstOctet) {
  EXPECT_TRUE(is_mac_syntax("52:54:00:12:34:56"));
  EXPECT_TRUE(is_mac_syntax("52:54:00:AB:cd:EF"));
  EXPECT_FALSE(is_mac_syntax("52:54:00:12:34"));
  EXPECT_FALSE(is_mac_syntax("52-54-00-12-34-56"));
  EXPECT_FALSE(is_mac_syntax("52:54:00:12:34:5g"));
  EXPECT_FALSE(is_mac_syntax("52:54:00:12:34:567"));
  EXPECT_TRUE(is_unicast_mac("52:54:00:12:34:56"));
  EXPECT_FALSE(is_unicast_mac("01:00:5e:00:00:01"));
  EXPECT_FALSE(is_unicast_mac("ff:ff:ff:ff:ff:ff"));
}

TEST(ProfileChecksTest, HostNamesAreRfc1123Labels) {
  EXPECT_TRUE(is_valid_hostname("dev"));
  EXPECT_TRUE(is_valid_hostname("dev-1.example.org"));
  EXPECT_TRUE(is_valid_hostname(std::string(63, 'a')));
  EXPECT_FALSE(is_valid_hostname(std::string(64, 'a')));
  EXPECT_FALSE(is_valid_hostname(""));
  EXPECT_FALSE(is_valid_hostname("-dev"));
  EXPECT_FALSE(is_valid_hostname("dev-"));
  EXPECT_FALSE(is_valid_hostname("dev..org"));
  EXPECT_FALSE(is_valid_hostname("dev.org."));
  EXPECT_FALSE(is_valid_hostname("dev_1"));
  std::string long_name;
  while (long_name.size() < 254) long_name += "abc.";
  EXPECT_FALSE(is_valid_hostname(long_name.substr(0, 254)));
}

TEST(ProfileChecksTest, ForwardRulesReadProtocolAddressAndPorts) {
  EXPECT_EQ((PortForward{"tcp", "127.0.0.1", 2222, 22}), forward("2222:22"));
  EXPECT_EQ((PortForward{"udp", "127.0.0.1", 5353, 53}), forward("UDP:5353:53"));
  EXPECT_EQ((PortForward{"tcp", "0.0.0.0", 8080, 80}), forward("0.0.0.0:8080:80"));
  EXPECT_EQ((PortForward{"tcp", "10.0.0.1", 1, 65535}), forward("tcp:10.0.0.1:1:65535"));
  EXPECT_EQ(
      "\"22\" is not a port forward; use \"[tcp:|udp:][ADDRESS:]HOSTPORT:GUESTPORT\", "
      "such as \"tcp:2222:22\"",
      forward_error("22"));
  EXPECT_EQ("\"sctp:1.2.3.4:1:2\": unknown protocol \"sctp\"; use tcp or udp",
            forward_error("sctp:1.2.3.4:1:2"));
  EXPECT_EQ("\"ssh:1:2\": \"ssh\" is neither tcp, udp nor an IPv4 address",
            forward_error("ssh:1:2"));
  EXPECT_EQ(
      "\"tcp:010.0.0.1:1:2\": \"010.0.0.1\" is not an IPv4 address; use one such as "
      "127.0.0.1, or 0.0.0.0 for all interfaces",
      forward_error("tcp:010.0.0.1:1:2"));
  EXPECT_EQ("\"0:22\": port 0 is out of range; use 1 to 65535", forward_error("0:22"));
  EXPECT_EQ("\"2222:999999\": port 999999 is out of range; use 1 to 65535",
            forward_error("2222:999999"));
  EXPECT_EQ("\"x:22\": \"x\" is not a port number; use 1 to 65535", forward_error("x:22"));
}

TEST(ProfileChecksTest, ForwardsCollideOnTheSamePortUnlessBothAddressesAreSpecificAndDiffer) {
  const PortForward loopback{"tcp", "127.0.0.1", 2222, 22};
  EXPECT_TRUE(forwards_collide(loopback, PortForward{"tcp", "127.0.0.1", 2222, 23}));
  EXPECT_TRUE(forwards_collide(loopback, PortForward{"tcp", "0.0.0.0", 2222, 23}));
  EXPECT_FALSE(forwards_collide(loopback, PortForward{"tcp", "10.0.0.1", 2222, 23}));
  EXPECT_FALSE(forwards_collide(loopback, PortForward{"udp", "127.0.0.1", 2222, 22}));
  EXPECT_FALSE(forwards_collide(loopback, PortForward{"tcp", "127.0.0.1", 2223, 22}));
}

TEST(ProfileChecksTest, SshKeysNeedAKnownTypeAndBase64Data) {
  EXPECT_TRUE(is_ssh_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me@host"));
  EXPECT_TRUE(is_ssh_public_key("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY="));
  EXPECT_TRUE(is_ssh_public_key("sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5"));
  EXPECT_FALSE(is_ssh_public_key("ssh-ed25519"));
  EXPECT_FALSE(is_ssh_public_key("ssh-ed25519 "));
  EXPECT_FALSE(is_ssh_public_key("ssh-ed25519 AAAA"));  // too short to be a key
  EXPECT_FALSE(is_ssh_public_key("pgp-key AAAAC3NzaC1lZDI1NTE5AAAA"));
  EXPECT_FALSE(is_ssh_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AA!A"));
}

TEST(ProfileChecksTest, NamesOfUsersInterfacesTagsAndCpuModels) {
  EXPECT_TRUE(is_valid_user_name("dev"));
  EXPECT_TRUE(is_valid_user_name("_svc-1"));
  EXPECT_FALSE(is_valid_user_name("Dev"));
  EXPECT_FALSE(is_valid_user_name("1dev"));
  EXPECT_FALSE(is_valid_user_name(std::string(33, 'a')));
  EXPECT_TRUE(is_valid_interface_name("tap0"));
  EXPECT_TRUE(is_valid_interface_name(std::string(15, 't')));
  EXPECT_FALSE(is_valid_interface_name(std::string(16, 't')));
  EXPECT_FALSE(is_valid_interface_name(".."));
  EXPECT_FALSE(is_valid_interface_name("br:0"));
  EXPECT_FALSE(is_valid_interface_name("br 0"));
  EXPECT_TRUE(is_valid_mount_tag("src_1-a"));
  EXPECT_FALSE(is_valid_mount_tag(""));
  EXPECT_FALSE(is_valid_mount_tag(std::string(32, 'a')));
  EXPECT_FALSE(is_valid_mount_tag("my.src"));
  EXPECT_TRUE(is_valid_cpu_model("Skylake-Client,+avx"));
  EXPECT_FALSE(is_valid_cpu_model("host;rm"));
  EXPECT_FALSE(is_valid_cpu_model(""));
}

TEST(ProfileChecksTest, DefaultMountTagsComeFromTheFoldersName) {
  EXPECT_EQ("src", default_mount_tag("/home/me/src", 0));
  EXPECT_EQ("my_src", default_mount_tag("/home/me/my.src", 0));
  EXPECT_EQ(std::string(31, 'a'), default_mount_tag("/x/" + std::string(40, 'a'), 0));
  EXPECT_EQ("share2", default_mount_tag("/", 2));
}

TEST(ProfileChecksTest, UuidsIpv4AndControlCharacters) {
  EXPECT_TRUE(is_canonical_uuid("6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f6071"));
  EXPECT_TRUE(is_canonical_uuid("6F1C2A3B-4D5E-8F60-9A1B-2C3D4E5F6071"));
  EXPECT_FALSE(is_canonical_uuid("6f1c2a3b4d5e8f609a1b2c3d4e5f6071"));
  EXPECT_FALSE(is_canonical_uuid("6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f607g"));
  EXPECT_TRUE(is_ipv4("0.0.0.0"));
  EXPECT_TRUE(is_ipv4("255.255.255.255"));
  EXPECT_FALSE(is_ipv4("256.0.0.1"));
  EXPECT_FALSE(is_ipv4("1.2.3"));
  EXPECT_FALSE(is_ipv4("1.2.3.4.5"));
  EXPECT_FALSE(is_ipv4("01.2.3.4"));
  EXPECT_EQ(std::nullopt, first_control_character("plain text, ünïcode"));
  EXPECT_EQ(0x1Bu, first_control_character("a\x1b[31m"));
  EXPECT_EQ(0x9Bu, first_control_character("a\xc2\x9b"));
  EXPECT_EQ("U+001B", hex4(0x1B));
  EXPECT_EQ("dev-1a", lowercase("DeV-1A"));
}

}  // namespace
}  // namespace qvm::profile
