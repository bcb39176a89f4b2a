// The account page's script: signs in with cookies (no token ever reaches this script), sends
// the CSRF value with every change, and shows one section at a time. Served from this origin
// only; the page's Content-Security-Policy allows nothing else.
'use strict';

const $ = (id) => document.getElementById(id);

// How the API's field names read to a person.
const FIELD_NAMES = {
  username: 'The username',
  password: 'The password',
  current_password: 'The current password',
  new_password: 'The new password',
  email: 'The email address',
  code: 'The code',
  token: 'The link',
};

function show(section) {
  for (const id of ['signin', 'forgot', 'reset', 'verify', 'account']) {
    $(id).hidden = id !== section;
  }
}

function say(message, isError) {
  const status = $('status');
  status.textContent = message;
  status.classList.toggle('error', Boolean(isError));
}

function csrf() {
  const pair = document.cookie.split('; ').find((c) => c.startsWith('__Host-rampart_csrf='));
  return pair ? pair.slice('__Host-rampart_csrf='.length) : '';
}

// One call to the API: JSON in and out; a problem document becomes an Error with its detail.
async function api(method, path, body) {
  const headers = { 'X-CSRF-Token': csrf() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const fields = data && data.errors
      ? data.errors.map((e) => `${FIELD_NAMES[e.field] || 'A field'} ${e.message}.`)
      : [];
    const wait = response.headers.get('Retry-After');
    const detail = fields.length
      ? 'Please check the form.'
      : response.status === 429 && wait
        ? `Too many attempts: try again in ${wait} second${wait === '1' ? '' : 's'}.`
        : data && data.detail;
    const error = new Error([detail, ...fields].filter(Boolean).join(' '));
    error.status = response.status;
    throw error;
  }
  return { status: response.status, data };
}

// Runs `action`, reporting what went wrong instead of failing silently.
async function attempt(action) {
  try {
    await action();
  } catch (error) {
    say(error.message || 'Something went wrong; try again.', true);
  }
}

// After a sign-out the page starts over: nothing of the previous person (an authenticator
// key, recovery codes) stays in it, shown or hidden.
function startOver(message) {
  sessionStorage.setItem('status', message);
  window.location.replace('/account');
}

// Signs out through `request`; the page starts over whatever the answer (a session that had
// already ended, a network failure): leaving is what the person asked for.
async function signOut(request, message) {
  try {
    await request();
    startOver(message);
  } catch (error) {
    startOver(error.status === 401 ? 'Signed out (the session had already ended).' : message);
  }
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

let mfaToken = null;

async function showAccount() {
  let me;
  try {
    me = (await api('GET', '/v1/users/me')).data;
  } catch (error) {
    if (error.status === 401) {
      show('signin');
      $('signin-name').focus();
      return;
    }
    throw error;
  }
  $('me-name').textContent = me.username;
  $('me-email').textContent = me.email;
  $('me-verified').textContent = me.email_verified ? 'verified' : 'not verified yet';
  $('resend').hidden = me.email_verified;
  $('mfa-state').textContent = me.mfa
    ? 'On: signing in needs a code from your app.'
    : 'Off: your password alone signs you in.';
  $('mfa-start').hidden = me.mfa;
  $('mfa-remove-form').hidden = !me.mfa;
  await listSessions();
  show('account');
  $('account-title').focus();
}

async function listSessions() {
  const list = $('sessions');
  list.replaceChildren();
  const { data } = await api('GET', '/v1/auth/sessions');
  for (const session of data.sessions) {
    const item = document.createElement('li');
    const when = new Date(session.last_used_at).toLocaleString();
    item.textContent = `${session.user_agent || 'Unknown device'}, last used ${when}${session.current ? ' (this browser)' : ''} `;
    const end = document.createElement('button');
    end.type = 'button';
    end.className = 'quiet';
    end.textContent = session.current ? 'Sign out here' : 'End';
    end.setAttribute('aria-label', `${end.textContent}: ${session.user_agent || 'unknown device'}, last used ${when}`);
    const path = `/v1/auth/sessions/${encodeURIComponent(session.id)}`;
    end.addEventListener('click', () => (session.current
      ? signOut(() => api('DELETE', path), 'Signed out.')
      : attempt(async () => {
        await api('DELETE', path);
        say('The session has ended.');
        await showAccount();
      })));
    item.append(end);
    list.append(item);
  }
}

function onSubmit(id, handler) {
  $(id).addEventListener('submit', (event) => {
    event.preventDefault();
    attempt(() => handler(event.target));
  });
}

function wire() {
  onSubmit('signin-form', async (form) => {
    const { status, data } = await api('POST', '/v1/browser/login', formValues(form));
    form.reset();
    if (status === 200 && data && data.mfa_required) {
      mfaToken = data.mfa_token;
      $('signin-form').hidden = true;
      $('mfa-form').hidden = false;
      $('mfa-code').focus();
      say('Enter the code from your authenticator app.');
      return;
    }
    say('Signed in.');
    await showAccount();
  });
  onSubmit('mfa-form', async (form) => {
    try {
      await api('POST', '/v1/browser/mfa', { mfa_token: mfaToken, code: formValues(form).code.trim() });
    } catch (error) {
      if (error.status !== 401) throw error;
      // Wrong, used, or the sign-in took too long: start again from the password.
      form.reset();
      mfaToken = null;
      $('mfa-form').hidden = true;
      $('signin-form').hidden = false;
      $('signin-name').focus();
      say('That code did not work, or signing in took too long. Sign in again.', true);
      return;
    }
    form.reset();
    mfaToken = null;
    $('mfa-form').hidden = true;
    $('signin-form').hidden = false;
    say('Signed in.');
    await showAccount();
  });
  onSubmit('forgot-form', async (form) => {
    await api('POST', '/v1/auth/password/forgot', formValues(form));
    form.reset();
    say('If the address has an account, a link to reset its password is on its way.');
  });
  onSubmit('reset-form', async (form) => {
    if (!linkToken) throw new Error('This link is incomplete: open the link from the message again.');
    await api('POST', '/v1/auth/password/reset', { token: linkToken, new_password: formValues(form).new_password });
    linkToken = null;
    form.reset();
    say('Your password is set, and every session has ended. Sign in with the new one.');
    show('signin');
  });
  onSubmit('password-form', async (form) => {
    await api('POST', '/v1/auth/password', formValues(form));
    form.reset();
    say('Password changed; your other sessions have ended.');
    await showAccount();
  });
  onSubmit('mfa-confirm-form', async (form) => {
    const { data } = await api('POST', '/v1/auth/mfa/totp/confirm', formValues(form));
    form.reset();
    $('mfa-enrol').hidden = true;
    $('mfa-codes').replaceChildren(...data.recovery_codes.map((code) => {
      const item = document.createElement('li');
      item.textContent = code;
      return item;
    }));
    $('mfa-recovery').hidden = false;
    say('Two-factor authentication is on.');
    await showAccount();
  });
  onSubmit('mfa-remove-form', async (form) => {
    await api('DELETE', '/v1/auth/mfa/totp', formValues(form));
    form.reset();
    $('mfa-recovery').hidden = true;
    say('Two-factor authentication is off.');
    await showAccount();
  });
  $('mfa-start').addEventListener('click', () => attempt(async () => {
    const { data } = await api('POST', '/v1/auth/mfa/totp');
    // The QR code is this server's SVG; parsed as SVG (never as HTML) and moved into the page.
    const svg = new DOMParser().parseFromString(data.qr_svg, 'image/svg+xml').documentElement;
    $('mfa-qr').replaceChildren(document.importNode(svg, true));
    $('mfa-secret').textContent = data.secret;
    $('mfa-enrol').hidden = false;
    $('mfa-start').hidden = true;
    $('mfa-confirm-code').focus();
  }));
  $('resend').addEventListener('click', () => attempt(async () => {
    await api('POST', '/v1/auth/email/verify/resend');
    say('A new verification link is on its way.');
  }));
  $('signout').addEventListener('click', () =>
    signOut(() => api('POST', '/v1/browser/logout'), 'Signed out.'));
  $('end-all').addEventListener('click', () =>
    signOut(() => api('POST', '/v1/auth/logout-all'), 'Every session has ended, this one too.'));
}

// A link's token is read once, kept only in this page's memory, and taken out of the address
// bar. (The browser's history keeps the link as it was opened; the token in it is single use
// and dies once used, superseded or expired.)
let linkToken = null;
function takeToken() {
  linkToken = new URLSearchParams(window.location.search).get('token');
  if (linkToken) window.history.replaceState(null, '', window.location.pathname);
  return linkToken;
}

async function start() {
  wire();
  const carried = sessionStorage.getItem('status');
  if (carried) {
    sessionStorage.removeItem('status');
    say(carried);
  }
  const path = window.location.pathname;
  if (path === '/account/forgot') {
    show('forgot');
  } else if (path === '/account/reset') {
    takeToken();
    show('reset');
  } else if (path === '/account/verify-email') {
    const token = takeToken();
    show('verify');
    if (!token) {
      say('This link is incomplete: open the link from the message again.', true);
      return;
    }
    try {
      await api('POST', '/v1/auth/email/verify', { token });
      say('Your email address is verified.');
    } catch (error) {
      say(error.message, true);
    }
  } else {
    await attempt(showAccount);
  }
}

document.addEventListener('DOMContentLoaded', start);
