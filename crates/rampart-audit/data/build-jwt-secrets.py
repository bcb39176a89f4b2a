#!/usr/bin/env python3
"""Builds jwt-secrets.txt, the dictionary `rampart audit` tries offline against HS256/384/512
access tokens (crates/rampart-audit/src/checks/jwt_secrets.rs).

Sources, in the order they are written (duplicates keep their first place):
  1. Framework, template and tutorial defaults listed below, written for rampart-audit.
  2. The most common passwords (a short list of well-known ones written here, not copied from a
     password dump).
  3. Variants of 1 and 2 generated here: case, and the suffixes people add (123, !, 1, _key,
     -secret, years).
  4. wallarm/jwt-secrets `jwt.secrets.list` (https://github.com/wallarm/jwt-secrets, MIT
     License, Copyright (c) 2020 Wallarm): JWT secrets found in public code and tutorials.
     Its licence is reproduced in the header of the output, as the MIT licence asks.

Usage: build-jwt-secrets.py WALLARM_LIST > jwt-secrets.txt
(the list is `jwt.secrets.list` at the root of wallarm/jwt-secrets; commit 99e2360 was used).
"""
import sys

FRAMEWORK_DEFAULTS = [
    # jwt.io's debugger sample, and the secrets of the most copied tutorials and templates.
    "your-256-bit-secret", "your-384-bit-secret", "your-512-bit-secret",
    "changethis",  # FastAPI full-stack template (SECRET_KEY=changethis)
    "random",  # VAmPI
    "secret", "Secret", "SECRET", "secretkey", "secret_key", "secret-key", "SECRET_KEY",
    "SecretKey", "mysecret", "my-secret", "my_secret", "mysecretkey", "my-secret-key",
    "my_secret_key", "mySecretKey", "supersecret", "super-secret", "super_secret",
    "supersecretkey", "super-secret-key", "super_secret_key", "topsecret", "top-secret",
    "jwt_secret", "jwt-secret", "jwtsecret", "JWT_SECRET", "jwtSecret", "JWT_SECRET_KEY",
    "jwt_secret_key", "jwt-secret-key", "jwtkey", "jwt_key", "jwt-key", "JWT_KEY",
    "change-me", "changeme", "change_me", "ChangeMe", "CHANGEME", "change-this", "change_this",
    "changeit", "change-it", "change_me_please", "please-change-me", "changemeplease",
    "replace-me", "replaceme", "replace_me", "todo", "TODO", "fixme",
    "shhhhh",  # express-jwt README
    "shhhhhhared-secret",  # express-jwt README
    "keyboard cat",  # express-session README
    "default", "defaultsecret", "default-secret", "default_secret", "defaultkey",
    "test", "testing", "testsecret", "test-secret", "test_secret", "dev", "development",
    "devsecret", "dev-secret", "dev_secret", "local", "localsecret", "production",
    "your_secret_key", "your-secret-key", "yoursecretkey", "YOUR_SECRET_KEY", "your_jwt_secret",
    "your-jwt-secret", "yourSecretKey", "your_secret", "your-secret", "YOUR_SECRET",
    "<your-secret>", "my_jwt_secret", "myjwtsecret", "my-jwt-secret",
    "secret123", "secretKey123", "s3cr3t", "s3cret", "sekret", "secrets", "password",
    "passw0rd", "key", "KEY", "privatekey", "private-key", "private_key", "private",
    "access_secret", "access-secret", "refresh_secret", "refresh-secret", "ACCESS_TOKEN_SECRET",
    "REFRESH_TOKEN_SECRET", "access_token_secret", "refresh_token_secret", "token_secret",
    "tokensecret", "token-secret", "TOKEN_SECRET", "auth_secret", "authsecret", "AUTH_SECRET",
    "app_secret", "appsecret", "APP_SECRET", "app-secret", "api_secret", "apisecret",
    "API_SECRET", "api-secret", "signing_key", "signingkey", "SIGNING_KEY",
    # Flask / Django / Rails / Laravel / Spring / Node tutorials and samples.
    "super-secret", "dev_key", "development key", "you-will-never-guess", "hard to guess string",
    "hard-to-guess-string", "a-very-secret-key", "very-secret-key", "verysecret",
    "this-is-a-secret", "thisisasecret", "thisismysecret", "ThisIsMySecret", "this_is_my_secret",
    "this-is-my-secret", "thisisthesecret", "this is a secret", "my secret", "my super secret key",
    "mysupersecretkey", "my-super-secret-key", "my_super_secret_key", "notsecret",
    "not-so-secret", "insecure", "django-insecure", "flask-secret", "flasksecret",
    "flask_secret_key", "FLASK_SECRET_KEY", "django_secret_key", "rails_secret",
    "base64:secret", "laravel", "spring", "springboot", "spring-secret", "javainuse",
    "javainuse-secret-key", "jwtSigningKey", "nodejs", "express", "expressjs", "node-secret",
    "nestjs", "nest", "koa", "koajs", "hapi", "fastify", "auth0", "firebase", "supabase",
    "super-secret-jwt-token-with-at-least-32-characters-long",  # Supabase local default
    "your-super-secret-jwt-token-with-at-least-32-characters-long",  # Supabase self-hosting
    "qwertyuiopasdfghjklzxcvbnm123456", "abcdefghijklmnopqrstuvwxyz", "0123456789",
    "12345678901234567890123456789012", "00000000000000000000000000000000",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "hello", "helloworld", "hello world", "Hello World",
    "HelloWorld", "foobar", "foo", "bar", "baz", "example", "sample", "demo", "admin", "root",
    "user", "guest", "pass", "1234", "12345", "123456", "abc123", "qwerty", "letmein",
    "welcome", "master", "gfg_jwt_secret_key", "GeeksForGeeks", "geeksforgeeks",
    "jsonwebtoken", "json-web-token", "JsonWebToken", "jwt", "JWT", "token", "Token",
    "HS256", "hs256", "hmac", "HMAC", "hmacsecret", "hmac-secret", "hmac_secret",
    "mykey", "my-key", "my_key", "MyKey", "secretpassword", "secret-password", "SecretPassword",
]

COMMON_PASSWORDS = [
    "123456", "password", "12345678", "qwerty", "123456789", "12345", "1234", "111111",
    "1234567", "dragon", "123123", "baseball", "abc123", "football", "monkey", "letmein",
    "696969", "shadow", "master", "666666", "qwertyuiop", "123321", "mustang", "1234567890",
    "michael", "654321", "superman", "1qaz2wsx", "7777777", "121212", "000000", "qazwsx",
    "123qwe", "killer", "trustno1", "jordan", "jennifer", "zxcvbnm", "asdfgh", "hunter",
    "buster", "soccer", "harley", "batman", "andrew", "tigger", "sunshine", "iloveyou",
    "2000", "charlie", "robert", "thomas", "hockey", "ranger", "daniel", "starwars", "klaster",
    "112233", "george", "computer", "michelle", "jessica", "pepper", "1111", "zxcvbn", "555555",
    "11111111", "131313", "freedom", "777777", "pass", "maggie", "159753", "aaaaaa", "ginger",
    "princess", "joshua", "cheese", "amanda", "summer", "love", "ashley", "nicole", "chelsea",
    "biteme", "matthew", "access", "yankees", "987654321", "dallas", "austin", "thunder",
    "taylor", "matrix", "admin", "admin123", "administrator", "welcome", "welcome1",
    "password1", "Password1", "Password123", "password123", "passw0rd", "p@ssw0rd", "P@ssw0rd",
    "p@ssword", "qwerty123", "qwe123", "1q2w3e4r", "1q2w3e", "1qaz2wsx3edc", "zaq12wsx",
    "azerty", "abcdef", "abcd1234", "a1b2c3", "a1b2c3d4", "aa123456", "football1", "iloveyou1",
    "princess1", "monkey1", "login", "solo", "secret1", "test123", "test1234", "testtest",
    "root", "toor", "guest", "changeme1", "default1", "temp", "temp123", "demo123", "user123",
    "hello123", "qwertyui", "asdfghjkl", "asdf", "asdf1234", "zxcv", "qazxsw", "1q2w3e4r5t",
    "987654", "123654", "147258369", "159357", "741852963", "88888888", "00000000", "11111",
    "222222", "333333", "444444", "999999", "0000", "9999", "2020", "2021", "2022", "2023",
    "2024", "2025",
]

SUFFIXES = ["", "1", "12", "123", "1234", "!", "!!", "1!", "123!", "_key", "-key", "key",
            "_secret", "-secret", "secret", "_jwt", "-jwt", "_token", "-token", "2023", "2024",
            "2025", "@123", "#123", "$", "*"]


def variants(word):
    for cased in dict.fromkeys([word, word.lower(), word.upper(), word[:1].upper() + word[1:]]):
        for suffix in SUFFIXES:
            yield cased + suffix


def main():
    seen = {}

    def add(secret):
        if secret and secret not in seen and "\n" not in secret and "\r" not in secret:
            seen[secret] = None

    for word in FRAMEWORK_DEFAULTS:
        add(word)
    for word in COMMON_PASSWORDS:
        add(word)
    for word in FRAMEWORK_DEFAULTS + COMMON_PASSWORDS:
        for variant in variants(word):
            add(variant)
    ours = len(seen)
    with open(sys.argv[1], encoding="utf-8", newline="") as wallarm:
        for line in wallarm:
            add(line.rstrip("\r\n"))
    out = sys.stdout
    out.write(HEADER.format(total=len(seen), ours=ours, wallarm=len(seen) - ours))
    for secret in seen:
        out.write(secret + "\n")


HEADER = """\
# Common and framework-default HMAC secrets for JWTs: {total} entries, one a line, tried by
# `rampart audit` against HS256/HS384/HS512 access tokens offline. This header ends at the
# first empty line; every later line is one secret, verbatim (a secret may start with `#`).
# Built by build-jwt-secrets.py (beside this file).
#
# The first {ours} entries were written for rampart-audit: framework, template and tutorial
# defaults (jwt.io, FastAPI full-stack template, VAmPI, express-jwt, express-session, Flask,
# Django, Rails, Laravel, Spring, Node and Supabase samples), common passwords, and their
# variants (case, and suffixes such as 123, !, _key, -secret, years).
#
# The other {wallarm} entries are from wallarm/jwt-secrets, jwt.secrets.list
# (https://github.com/wallarm/jwt-secrets, commit 99e2360), under this licence:
#
# MIT License
#
# Copyright (c) 2020 Wallarm
#
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
# in the Software without restriction, including without limitation the rights
# to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
# copies of the Software, and to permit persons to whom the Software is
# furnished to do so, subject to the following conditions:
#
# The above copyright notice and this permission notice shall be included in all
# copies or substantial portions of the Software.
#
# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
# IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
# FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
# AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
# LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
# OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
# SOFTWARE.

"""

if __name__ == "__main__":
    main()
